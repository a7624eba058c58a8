"""Which stages run (gzmorph.stages): the config's stages and what the sources allow."""

from __future__ import annotations

from gzmorph.stages import plan_rows, stage_plan

VOTES = {"kaggle": {"votes": True}}
NO_VOTES = {"mine": {"votes": False}}
REP = {"model": "", "finetune": {"label": "rings"}}


def runs(plan):
    return {k for k, v in plan.items() if v["runs"]}


def test_every_stage_runs_on_a_source_with_votes():
    plan = stage_plan({}, VOTES, REP)
    assert runs(plan) == {"classify", "distill", "embeddings", "similarity", "anomalies", "finetune"}


def test_without_votes_or_a_given_representation_the_representation_does_not_run():
    plan = stage_plan({}, NO_VOTES, REP)
    assert runs(plan) == {"classify", "distill"}
    assert "represent.model" in plan["embeddings"]["why"] and "mine" in plan["embeddings"]["why"]


def test_a_representation_trained_elsewhere_embeds_any_images():
    plan = stage_plan({"stages": ["classify", "represent"]}, NO_VOTES, {**REP, "model": "/m/model.pt"})
    assert runs(plan) == {"classify", "embeddings", "similarity"}
    assert "not in the config's stages" in plan["distill"]["why"]
    assert "Class6.1" in plan["anomalies"]["why"] and "Class8.1" in plan["finetune"]["why"]
    assert "/m/model.pt" in plan["similarity"]["why"]
    plan = stage_plan({}, NO_VOTES, {"model": "/m", "finetune": {"label": "class"}})
    assert plan["finetune"]["runs"]


def test_several_sources_some_without_votes():
    plan = stage_plan({}, {**VOTES, **NO_VOTES}, REP)
    assert plan["embeddings"]["runs"] and "kaggle" in plan["embeddings"]["why"]
    assert not plan["anomalies"]["runs"] and "mine has none" in plan["anomalies"]["why"]


def test_config_stages_and_report_rows():
    plan = stage_plan({"stages": ["classify"]}, VOTES, REP)
    assert runs(plan) == {"classify"}
    rows = plan_rows(plan)
    assert rows[0] == {"stage": "classification", "runs": "yes", "why": "trained on the curated classes (labels)"}
    assert [r["runs"] for r in rows[1:]] == ["no"] * 5


def test_an_empty_stages_list_is_curation_only():
    """stages: [] ran every stage (an empty list read as 'not given'); absent, every stage runs."""
    assert runs(stage_plan({"stages": []}, VOTES, REP)) == set()
    assert "not in the config's stages (none)" in stage_plan({"stages": []}, VOTES, REP)["classify"]["why"]
    assert runs(stage_plan({}, VOTES, REP)) == runs(stage_plan({"stages": ["classify", "distill", "represent"]},
                                                                VOTES, REP))
