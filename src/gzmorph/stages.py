"""Which stages a run does, and why the others do not: the config's ``stages`` and what the data allow.

Classification and distillation need labels, which curation always gives (a vote cut or a label
cut).  The representation trains on vote fractions, so it runs when a source has them, or when
``represent.model`` names a representation trained elsewhere (then embedding and similarity run on
any images).  The anomaly search simulates its user from the odd votes (``Class6.1``) and the
``rings`` fine-tuning task reads the ring votes, so both need vote fractions for every galaxy.

:func:`stage_plan` returns, for every stage and representation part, whether it runs and why (or
why not): the workflow registers only the parts that run, and the report shows the reasons.
Torch-free: called when the DAG is built.
"""

from __future__ import annotations

STAGES = ("classify", "distill", "represent")
REPRESENT_PARTS = ("embeddings", "similarity", "anomalies", "finetune")


def staged(config: dict) -> list[str]:
    """The stages the config asks for: ``stages`` as given (``[]``: curation only), all when absent."""
    chosen = config.get("stages")
    return list(STAGES if chosen is None else chosen)


def stage_plan(config: dict, sources: dict[str, dict], represent: dict) -> dict[str, dict]:
    """``{stage or representation part: {"runs": bool, "why": str}}`` for ``config`` (its ``stages``),
    ``sources`` (:func:`gzmorph.sources.plan.source_specs`: ``votes`` per source) and the
    ``represent`` settings (``model``, ``finetune.label``)."""
    chosen = staged(config)
    no_votes = [n for n, s in sources.items() if not s["votes"]]
    plan = {}

    def off(stage):
        return {"runs": False, "why": f"not in the config's stages ({', '.join(chosen) or 'none'})"}

    plan["classify"] = ({"runs": True, "why": "trained on the curated classes (labels)"}
                        if "classify" in chosen else off("classify"))
    plan["distill"] = ({"runs": True, "why": "distilled from the curated classes (labels)"}
                       if "distill" in chosen else off("distill"))
    if "represent" not in chosen:
        for part in REPRESENT_PARTS:
            plan[part] = off("represent")
        return plan
    model = represent.get("model") or ""
    if model:
        how = f"with the representation trained elsewhere named in represent.model ({model})"
    elif len(no_votes) < len(sources):
        voted = [n for n in sources if n not in no_votes]
        how = f"with a representation trained on the vote fractions of {', '.join(voted)}"
    else:
        why = (f"no source has vote fractions to train a representation on ({', '.join(no_votes)} "
               "declare none); name a representation trained elsewhere in represent.model")
        for part in REPRESENT_PARTS:
            plan[part] = {"runs": False, "why": why}
        return plan
    plan["embeddings"] = {"runs": True, "why": f"every source galaxy embedded {how}"}
    plan["similarity"] = {"runs": True, "why": f"nearest neighbours in the embedding, {how}"}
    votes_needed = (f"needs vote fractions for every galaxy, and {', '.join(no_votes)} "
                    f"{'has' if len(no_votes) == 1 else 'have'} none")
    plan["anomalies"] = ({"runs": False, "why": f"the simulated user's interest is the odd votes (Class6.1): "
                                                f"{votes_needed}"} if no_votes
                         else {"runs": True, "why": f"the odd votes (Class6.1) as the user's interest, {how}"})
    from .represent_settings import FinetuneSettings

    label = (represent.get("finetune") or {}).get("label", FinetuneSettings.label)
    if label == "rings" and no_votes:
        plan["finetune"] = {"runs": False, "why": f"the rings task reads the ring votes (Class8.1): {votes_needed}; "
                                                  "choose represent.finetune.label: class or a label column"}
    else:
        plan["finetune"] = {"runs": True, "why": f"fine-tuning on the label {label!r}, {how}"}
    return plan


def plan_rows(plan: dict[str, dict]) -> list[dict]:
    """The plan as table rows (stage, runs, why) in stage order, for the report."""
    names = {"classify": "classification", "distill": "distillation", "embeddings": "representation: embeddings",
             "similarity": "representation: similarity search", "anomalies": "representation: anomaly search",
             "finetune": "representation: fine-tuning"}
    return [{"stage": names.get(k, k), "runs": "yes" if v["runs"] else "no", "why": v["why"]}
            for k, v in plan.items()]
