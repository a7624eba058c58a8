"""Report sections of the representation stage: the embeddings, similarity search, anomaly
detection and fine-tuning parts, each from the outputs of its rule."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..anomalies import ANOMALY_METHODS
from ..curate import read_catalogue
from ..imageset import ImageStore
from ..io import load_bundle, read_json
from . import html as R


def represent_section(part: str, inputs: dict, model_from: str = "") -> R.Section:
    """The report section of one part of the stage; ``inputs`` are the rule's input paths;
    ``model_from``: the file of a representation trained elsewhere (config represent.model), if any."""
    if part == "embeddings":
        return _embeddings_section(inputs, model_from)
    builder = {"similarity": _similarity_section, "anomalies": _anomalies_section,
               "finetune": _finetune_section}[part]
    return builder(inputs)


def _fmt_ms(d: dict) -> str:
    """``mean ± sd`` of a metric summarised over seeds."""
    return f"{d['mean']:.3f} ± {d['sd']:.3f}"


def _embeddings_section(inp, model_from: str = ""):
    """The representation: what was trained, its training curve and the 2-D map of the embeddings."""
    from ..represent import MODEL_FORMAT  # torch: only this part needs it

    bundle = load_bundle(inp["model"], MODEL_FORMAT, "representation model file")
    m = pd.read_parquet(inp["map"])
    curated, classes = read_catalogue(inp["curated"], columns=["id", "label_name"])
    import pyarrow.parquet as pq

    has_odd = "Class6.1" in pq.read_schema(inp["source"]).names  # sources without votes have none
    source = pd.read_parquet(inp["source"], columns=["id", *(["Class6.1"] if has_odd else [])])
    training = pd.read_csv(inp["training"], sep="\t")
    qc = read_json(inp["qc"])
    sec = R.Section("Representation (Zoobot-style)", anchor="represent-embeddings",
                    order=R.ORDER["embeddings"], summary="one model answering every decision-tree question")
    cfg = bundle["config"]
    last = training.iloc[-1] if len(training) else {}
    if model_from:
        sec.add(R.note(f"The representation was trained elsewhere and is used here as it is "
                       f"(config represent.model: `{model_from}`); nothing was trained on this dataset, and its "
                       "galaxies are only embedded."))
    sec.add(R.paragraph(
        f"A {bundle['model_config']['name']} backbone at {bundle['image_size']} px with one output per answer "
        f"({len(bundle['answers'])}) is trained on every galaxy of {'its' if model_from else 'the'} source with the "
        "negative log "
        "Dirichlet-multinomial likelihood of each question's vote counts (concentration 1 + 100·sigmoid). "
        + {"counts": "Vote counts come from the catalogue.",
           "counts and fractions": "Vote counts come from the catalogue where it has them (per question and "
                                   "galaxy); elsewhere they are conditional fraction × reach × "
                                   f"{cfg['n_volunteers']} volunteers, rounded (e.g. the Zoobot GZ2 release has "
                                   "no question-8 counts)."}.get(
            bundle["count_source"], f"The catalogue has only cumulative vote fractions: counts are conditional "
                                    f"fraction × reach × {cfg['n_volunteers']} volunteers, rounded.") +
        f" The {bundle['num_features']}-d pooled layer is the representation."))
    sec.add(R.metrics({"galaxies": int(bundle["n_galaxies"]), "embedding dim": int(bundle["num_features"]),
                       "epochs": int(len(training)), "final val loss": float(last.get("val_loss", float("nan"))),
                       "skipped images": int(qc.get("n_corrupt_images", 0))}, float_format="{:.3f}",
                      name="overview"))
    fig = R.new_figure((5.2, 3.0))
    ax = fig.add_subplot()
    ax.plot(training["epoch"], training["train_loss"], "o-", label="train")
    if "val_loss" in training:
        ax.plot(training["epoch"], training["val_loss"], "s-", label="validation")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss per galaxy (−log likelihood)")
    ax.legend(frameon=False)
    R.style_axes(ax)
    fig2 = embedding_map_figure(m, curated, classes, source if has_odd else None)
    sec.add(R.figure(fig2, f"Embedding map of all {len(m):,} galaxies ({m['method'].iloc[0].upper()} of the "
                           "representation), coloured by curated label"
                           + (" and by odd fraction." if has_odd else "."), name="embedding-map"),
            R.figure(fig, "Training curve.", name="training-curve"))
    return sec


def embedding_map_figure(m: pd.DataFrame, curated: pd.DataFrame, classes, source: pd.DataFrame | None = None):
    """The 2-D map (``id``, ``x``, ``y``, ``method``) coloured by curated label, one colour per class and
    the legend beside the axes; with ``source`` (``id``, ``Class6.1``) a second panel by odd fraction.
    The labelled galaxies are drawn in one call in a seeded random order (drawn class by class, the
    last classes hid the first)."""
    from matplotlib.lines import Line2D

    has_odd = source is not None
    fig = R.new_figure((11, 4.2) if has_odd else (6.4, 4.2))
    a1, a2 = fig.subplots(1, 2) if has_odd else (fig.add_subplot(), None)
    lab = m.merge(curated[["id", "label_name"]], on="id", how="left")
    grey = "#c8ccd6"
    a1.scatter(lab["x"], lab["y"], s=3, c=grey)
    known = lab[lab["label_name"].isin(classes)]
    order = np.random.default_rng(0).permutation(len(known))
    colours = R.class_colours(len(classes))
    code = known["label_name"].map({n: i for i, n in enumerate(classes)}).to_numpy(int)[order]
    a1.scatter(known["x"].to_numpy()[order], known["y"].to_numpy()[order], s=4, c=colours[code])
    counts = known["label_name"].value_counts()
    handles = [Line2D([], [], ls="", marker="o", ms=4, color=colours[i], label=f"{n} ({counts.get(n, 0)})")
               for i, n in enumerate(classes)]
    handles.append(Line2D([], [], ls="", marker="o", ms=4, color=grey, label="not in the cut"))
    a1.legend(handles=handles, fontsize=7, frameon=False, loc="center left", bbox_to_anchor=(1.0, 0.5),
              ncols=-(-len(handles) // 15))
    a1.set_title("curated label", fontsize=9)
    if has_odd:
        odd = m.merge(source, on="id", how="left")
        sc = a2.scatter(odd["x"], odd["y"], s=3, c=odd["Class6.1"], cmap="viridis")
        fig.colorbar(sc, ax=a2, label="odd fraction (Class6.1)")
        a2.set_title("odd fraction", fontsize=9)
    for a in (a1, a2) if has_odd else (a1,):
        a.set_xlabel(f"{m['method'].iloc[0].upper()} 1")
        a.set_ylabel(f"{m['method'].iloc[0].upper()} 2")
        R.style_axes(a, grid=None)
    return fig


def _similarity_section(inp):
    """Similarity search: precision@k against the curated labels (and true kinds) and each query's neighbours."""
    met = read_json(inp["metrics"])
    tab = pd.read_parquet(inp["neighbours"])
    sec = R.Section("Similarity search", anchor="represent-similarity", order=R.ORDER["embeddings"] + 1,
                    summary=f"precision@{met['k']} {met['precision_at_k']:.3f} vs base rate {met['base_rate']:.3f}")
    sec.add(R.paragraph(f"Representation → PCA ({met['n_components']} components) → Euclidean nearest neighbours "
                        "(ball tree). Precision@k: every labelled (curated) galaxy is a query and its "
                        f"{met['k']} nearest labelled neighbours are compared with its label; the base rate is the "
                        "precision of random neighbours."))
    vals = {f"precision@{met['k']}": met["precision_at_k"], "label base rate": met["base_rate"],
            "lift": met["lift"], "labelled queries": int(met["n_labelled"])}
    if "truth" in met:
        vals[f"precision@{met['k']}, true kind ({met['truth']['column']})"] = met["truth"]["precision_at_k"]
        vals["true-kind base rate"] = met["truth"]["base_rate"]
    sec.add(R.metrics(vals, float_format="{:.3f}", name="precision"))
    per = pd.DataFrame({"precision@k": met["precision_per_label"]})
    per.index.name = "curated label"
    blocks = [R.table(per, float_format="{:.3f}", caption="Precision by query label", name="precision-by-label")]
    if "truth" in met:
        pt = pd.DataFrame({"precision@k": met["truth"]["precision_per_kind"]})
        pt.index.name = met["truth"]["column"]
        blocks.append(R.table(pt, float_format="{:.3f}", caption="Precision by true morphology (all galaxies)",
                              name="precision-by-truth"))
    sec.add(R.columns(*blocks))
    store = ImageStore(inp["images"])  # one store (and id index) for every query
    for q in dict.fromkeys(tab["query_id"]):
        t = tab[tab["query_id"] == q].sort_values("rank")
        ids = [q.item() if hasattr(q, "item") else q] + t["neighbour_id"].tolist()
        imgs = store.read_rows(store.rows_of(ids))
        titles = [f"query {q}\n{t['query_label'].iloc[0]}"] + [
            f"{r}: {lab if isinstance(lab, str) else '–'}\nd={d:.3g}"
            for r, lab, d in zip(t["rank"], t["neighbour_label"], t["distance"])]
        sec.add(R.image_grid(imgs, titles, ncols=len(ids), cell_px=64,
                             label=f"Query {q} ({t['query_label'].iloc[0]}) and its nearest neighbours",
                             name=f"query-{R.export_name(t['query_label'].iloc[0])}-{q}"))
    return sec


def _anomalies_section(inp):
    """Anomaly detection: ranking metrics per method, learning curves and each method's top galaxies."""
    met = read_json(inp["metrics"])
    curves = pd.read_csv(inp["curves"], sep="\t")
    rank = pd.read_parquet(inp["ranking"])
    names = ANOMALY_METHODS
    base = "astronomaly"
    sec = R.Section("Personalised anomaly detection", anchor="represent-anomalies", order=R.ORDER["embeddings"] + 2,
                    summary=f"AP {met['methods']['gp']['average_precision']['mean']:.3f} (GP) vs "
                            f"{met['methods'][base]['average_precision']['mean']:.3f} (Astronomaly baseline)")
    sec.add(R.paragraph(
        f"A simulated user rates interest as round(5 × odd fraction); true anomalies: odd fraction > "
        f"{met['threshold']} ({met['n_anomalies']} of {met['n_galaxies']:,} galaxies). Representation → PCA "
        f"{met['n_components']} → standardise; the GP method asks {met['initial']} random galaxies, then batches of "
        f"{met['batch']} by expected improvement, up to {met['budget']} labels; mean ± sd over "
        f"{len(met['seeds'])} seeds. Precision in the top N uses N = min(N, number of anomalies) "
        f"({', '.join(f'{k}: {v}' for k, v in met['top_n'].items())})."))
    if met.get("note"):
        sec.add(R.note(met["note"], kind="warn"))
    rows = []
    for m, vals in met["methods"].items():
        rows.append({"method": names.get(m, m), **{k: _fmt_ms(v) for k, v in vals.items()}})
    sec.add(R.table(pd.DataFrame(rows), caption="Ranking metrics, mean ± sd over seeds", name="ranking-metrics"))
    if len(curves):
        col = [c for c in curves.columns if c.startswith("precision_top")][0]
        fig = R.new_figure((5.6, 3.2))
        ax = fig.add_subplot()
        for m, g in curves.groupby("method"):
            s = g.groupby("n_labels")[col].agg(["mean", "std"]).fillna(0)
            ax.plot(s.index, s["mean"], "o-", ms=3, label=names.get(m, m))
            ax.fill_between(s.index, s["mean"] - s["std"], s["mean"] + s["std"], alpha=0.15)
        ax.set_xlabel("labels given by the user")
        ax.set_ylabel(col.replace("_", " "))
        ax.set_ylim(-0.02, 1.02)
        ax.legend(frameon=False, fontsize=8)
        R.style_axes(ax)
        sec.add(R.figure(fig, "Precision of the top-ranked galaxies vs the number of labels (seed mean ± sd).",
                         name="precision-curve"))
    store = ImageStore(inp["images"])
    for m in ("gp", base):
        top = rank.sort_values(f"score_{m}", ascending=False).head(16)
        imgs = store.read_rows(store.rows_of(top["id"].to_numpy()))
        sec.add(R.image_grid(imgs, [f"{i}\nodd {o:.2f}" for i, o in zip(top["id"], top["odd_fraction"])],
                             ncols=8, cell_px=84, label=f"Top 16 by {names[m]} (first seed)", name=f"top-{m}"))
    return sec


def _finetune_section(inp):
    """Fine-tuning from few labels: accuracy, balanced accuracy and ROC AUC per arm and label budget."""
    met = read_json(inp["metrics"])
    runs = pd.read_csv(inp["runs"], sep="\t")
    rings = met.get("label", "rings") == "rings"
    per_class = "rings" if rings else "galaxies per class"
    sec = R.Section(f"Fine-tuning from few labels: {'rings' if rings else met['task']}", anchor="represent-finetune",
                    order=R.ORDER["embeddings"] + 3, summary="label efficiency of the representation")
    if rings:
        counts = f"{met['n_rings']} rings, {met['n_not_rings']} non-rings"
        task = f"ring vs not ring, {met['rule']}"
    else:
        counts = ", ".join(f"{c}: {n}" for c, n in zip(met["classes"], met["class_counts"]))
        task = f"{met['task']} (represent.finetune.label: {met['label']})"
    n_classes = 2 if rings else len(met["classes"])
    sec.add(R.paragraph(
        f"Task: {task}. Labelled galaxies: {counts}. Per seed a balanced test set of {met['n_test_per_class']} "
        f"galaxies per class is held out and the training sets are balanced (budget = {per_class}). Arms: frozen "
        f"representation + linear head ({met['head_steps']} steps), representation fine-tuned and the same "
        f"architecture from scratch ({met['steps']} steps each); "
        + (f"mean ± sd over {len(met['seeds'])} seeds." if len(met["seeds"]) > 1
           else "one seed (no spread)." if met["seeds"] else "no run (see the note).")
        + ("" if n_classes == 2 else " ROC AUC is the one-vs-rest macro average.")))
    if met["notes"]:
        sec.add(R.note("; ".join(met["notes"]) + f" (budgets: auto; an explicit list above the available {per_class} "
                       "is an error)."))
    if not met["arms"]:
        return sec
    rows = []
    for arm, per in met["arms"].items():
        for b, v in per.items():
            def cell(k, v=v):  # one seed has no spread to show; a metric some seeds lack says so
                n = v.get(k + "_n", v["n_seeds"])
                if n == 0:
                    return "– (undefined: a test set lacked a class)"
                text = f"{v[k + '_mean']:.3f}" + (f" ± {v[k + '_sd']:.3f}" if n > 1 else "")
                return text + (f" ({n} of {v['n_seeds']} seeds)" if n < v["n_seeds"] else "")

            row = {"arm": arm, f"budget ({per_class})": int(b), "accuracy": cell("accuracy")}
            if "balanced_accuracy_mean" in v:
                row["balanced accuracy"] = cell("balanced_accuracy")
            row["ROC AUC"] = cell("roc_auc")
            rows.append(row)
    sec.add(R.table(pd.DataFrame(rows).sort_values([f"budget ({per_class})", "arm"]).reset_index(drop=True),
                    caption="Test accuracy, balanced accuracy and ROC AUC, mean ± sd over seeds", name="accuracy-auc"))
    fig = R.new_figure((9, 3.2))
    a1, a2 = fig.subplots(1, 2)
    for arm, g in runs.groupby("arm", sort=False):
        for ax, col in ((a1, "accuracy"), (a2, "roc_auc")):
            s = g.groupby("budget")[col].agg(["mean", "std"]).fillna(0)
            ax.errorbar(s.index, s["mean"], yerr=s["std"], marker="o", capsize=3, label=arm)
    for ax, col in ((a1, "accuracy"), (a2, "ROC AUC")):
        ax.set_xscale("log", base=2)
        ax.set_xlabel(f"{per_class} in the training set")
        ax.set_ylabel(f"test {col}")
        ax.axhline(1 / n_classes if col == "accuracy" else 0.5, color="#9aa1b1", lw=0.8, ls="--")
        R.style_axes(ax)
    a1.legend(frameon=False, fontsize=8)
    sec.add(R.figure(fig, f"Label efficiency: test accuracy and ROC AUC vs number of labelled {per_class}.",
                     name="label-efficiency"))
    return sec
