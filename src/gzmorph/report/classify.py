"""The classification report section: accuracy table, confusion matrices, training curves and
the most confident mistakes of each classifier."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..classify import HIWL_CLASSES, load_images
from .html import (ORDER, Section, columns, figure, image_grid, metrics as metrics_block, note, paragraph, table,
                   write_fragment)


def confusion_figure(metrics: dict, title: str = "", normalise: bool = True):
    """Confusion matrix (rows true, columns predicted; row-normalised colours, counts written)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    from .figures import user_text_is_plain

    user_text_is_plain()  # class names as written, never read as mathematics

    cm = np.asarray(metrics["confusion"], float)
    classes = metrics["classes"]
    frac = cm / np.maximum(cm.sum(1, keepdims=True), 1) if normalise else cm
    fig, ax = plt.subplots(figsize=(1.1 * len(classes) + 1.8, 1.0 * len(classes) + 1.4))
    ax.imshow(frac, cmap="Blues", vmin=0, vmax=1 if normalise else None)
    for i in range(len(classes)):
        for j in range(len(classes)):
            ax.text(j, i, f"{int(cm[i, j])}", ha="center", va="center", fontsize=9,
                    color="white" if frac[i, j] > 0.5 else "black")
    ax.set_xticks(range(len(classes)), classes, rotation=35, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title or f"{metrics.get('model', '')} accuracy {metrics['accuracy']:.3f}")
    fig.tight_layout()
    return fig


def training_curves_figure(tables: dict[str, str | Path | pd.DataFrame]):
    """Train/val loss and val accuracy per epoch; ``tables`` maps a model name to its metrics TSV."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    from .figures import user_text_is_plain

    user_text_is_plain()  # class names as written, never read as mathematics

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.4))
    for name, t in tables.items():
        t = t if isinstance(t, pd.DataFrame) else pd.read_csv(t, sep="\t")
        for level, g in t.groupby("level", sort=False) if "level" in t.columns else [(name, t)]:
            label = name if level == name else f"{name}/{level}"
            line, = ax1.plot(g["epoch"], g["train_loss"], "o-", ms=3, label=f"{label} train")
            if "val_loss" in g:
                ax1.plot(g["epoch"], g["val_loss"], "s--", ms=3, color=line.get_color(), label=f"{label} val")
            if "val_accuracy" in g:
                ax2.plot(g["epoch"], g["val_accuracy"], "o-", ms=3, color=line.get_color(), label=label)
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("loss (log scale)")
    ax1.set_yscale("log")
    ax2.set_xlabel("epoch")
    ax2.set_ylabel("val accuracy")
    ax1.legend(fontsize=7)
    ax2.legend(fontsize=7)
    fig.tight_layout()
    return fig


def confident_mistakes(pred: pd.DataFrame, images: str | Path, n: int = 16) -> tuple[np.ndarray, list[str]]:
    """The ``n`` wrong predictions with the highest predicted probability: (images, titles)."""
    wrong = pred[~pred["correct"]].copy()
    pcols = [c for c in pred.columns if c.startswith("p_")]
    wrong["p_pred"] = wrong[pcols].to_numpy().max(1) if len(wrong) else []
    wrong = wrong.sort_values("p_pred", ascending=False).head(n)
    if wrong.empty:
        return np.zeros((0, 1, 1, 3), np.uint8), []
    imgs = load_images(images, wrong["id"].to_numpy())
    titles = [f"{r.id}\ntrue {r.label_name}\npred {r.pred_name} {r.p_pred:.2f}" for r in wrong.itertuples()]
    return imgs, titles


def training_table(models: dict[str, dict]) -> pd.DataFrame | None:
    """One row per model and level: the settings of its ``training`` record (metrics files before it:
    ``None``) and the level's epochs."""
    rows = []
    for name, m in models.items():
        t = m.get("training")
        if not t:
            continue
        settings = {k: (v if isinstance(v, (int, float, str)) else str(v)) for k, v in t.items() if k != "levels"}
        for level, lv in (t.get("levels") or {"": {}}).items():
            rows.append({"model": name, "level": level, **settings, **lv})
    return pd.DataFrame(rows) if rows else None


def _column_counts(path: str | Path, column: str) -> tuple[int, dict]:
    """``(rows, {value: count})`` of one column of a Parquet file, read a batch at a time."""
    import pyarrow.parquet as pq

    counts: dict = {}
    rows = 0
    for batch in pq.ParquetFile(path).iter_batches(columns=[column]):
        rows += batch.num_rows
        for k, v in batch.column(0).to_pandas().value_counts().items():
            counts[k] = counts.get(k, 0) + int(v)
    return rows, counts


def applied_table(applied: dict[tuple[str, str], str | Path], catalogues: dict[str, str | Path],
                  classes: list[str]) -> pd.DataFrame:
    """One row per other catalogue (``classify.apply_to``) and model: its galaxies, how many were
    classified, how many were skipped as unreadable, and how many went to each class."""
    import pyarrow.parquet as pq

    rows = []
    for (name, model), path in applied.items():
        n, counts = _column_counts(path, "pred_name")
        total = pq.ParquetFile(catalogues[name]).metadata.num_rows
        rows.append({"catalogue": name, "model": model, "galaxies": total, "classified": n,
                     "unreadable (skipped)": total - n, **{c: counts.get(c, 0) for c in classes}})
    return pd.DataFrame(rows)


def report_section(models: dict[str, dict], tables: dict[str, str | Path], predictions: dict[str, str | Path],
                   images: str | Path, out: str | Path, n_mistakes: int = 16, *,
                   figures_dir: str | Path | None = None, tables_dir: str | Path | None = None,
                   applied: dict[tuple[str, str], str | Path] | None = None,
                   applied_tables: dict[str, str | Path] | None = None, hiwl_skipped: str = "cut"):
    """Write the classification report fragment (and its figures and tables into the folders
    ``figures_dir`` and ``tables_dir``, see :func:`write_fragment`).  ``models`` maps model name to its metrics dict;
    ``applied`` maps (catalogue, model) to that model's predictions on a ``classify.apply_to``
    catalogue, whose source table ``applied_tables`` names; ``hiwl_skipped`` says why hiwl is not among
    ``models`` ("cut": the cut is not hiwl5; "models": classify.models leaves it out)."""
    sec = Section("Classification", anchor="classification", order=ORDER["classification"])
    first = next(iter(models.values()))
    sec.summary = ", ".join(f"{k} {m['accuracy']:.3f}" for k, m in models.items())
    sec.add(paragraph(f"Test-split classification of the {first.get('cut') or ''} cut "
                      f"({first['n_test']} galaxies, {len(first['classes'])} classes)."))
    if "hiwl" not in models and hiwl_skipped == "models":
        sec.add(note("Only the flat classifier ran: classify.models leaves out hiwl."))
    elif "hiwl" not in models:
        sec.add(note("Only the flat classifier applies: the HIWL hierarchy needs the hiwl5 classes "
                     f"{HIWL_CLASSES}, this cut has {first['classes']}."))
    trained = training_table(models)
    if trained is not None:
        sec.add(table(trained, caption="How each classifier was trained (its model file's settings, after the "
                      "preset; epochs run and best epoch per level)", name="training-settings"))
    if "fine_threshold" in models.get("hiwl", {}):
        t = models["hiwl"]["fine_threshold"]
        start = {"coarse": "the coarse level's trained backbone", "pretrained": "the pretrained encoder"}.get(
            models["hiwl"].get("fine_init"), "random weights")
        sec.add(note(f"hiwl's fine level (cigar vs edge-on) started from {start}; it calls a galaxy of the merged "
                     f"class cigar where P(cigar) >= {t:.2f}" + (" (its argmax)." if t == 0.5 else
                                                                 " (classify.fine_threshold).")))
    views = {k: m.get("tta", 1) for k, m in models.items() if m.get("tta", 1) > 1}
    if views:
        by_count = {v: [k for k in views if views[k] == v] for v in sorted(set(views.values()), reverse=True)}
        said = "; ".join(f"{' and '.join(ks)} {'average' if len(ks) > 1 else 'averages'} the class probabilities of "
                         f"{v} views of each galaxy" for v, ks in by_count.items())
        sec.add(note(f"Test-time views (classify.tta): {said} (its 90° rotations"
                     + (", and for 8 views their mirror images)." if 8 in views.values() else ").")))
    sec.add(metrics_block({f"{k} accuracy": m["accuracy"] for k, m in models.items()}
                          | {f"{k} macro F1": m["macro_f1"] for k, m in models.items()}, float_format="{:.3f}",
                          name="accuracy"))
    missing = first.get("classes_without_test")
    if missing:
        sec.add(note(f"No test galaxies of {', '.join(missing)} (too few to curate into every split; curation "
                     "fills train first): their recall and F1 are undefined, shown as 0, and count as 0 in macro F1."))
    rows = [{"class": c, **{f"{k} {s}": m["per_class"][c][s] for k, m in models.items()
                            for s in ("precision", "recall", "f1")},
             "support": first["per_class"][c]["support"]} for c in first["classes"]]
    rows.append({"class": "all (accuracy)", **{f"{k} f1": m["accuracy"] for k, m in models.items()},
                 "support": first["n_test"]})
    sec.add(table(pd.DataFrame(rows), caption="Per-class precision, recall and F1 on the test split",
                  float_format="{:.3f}", name="per-class"))
    sec.add(columns(*[figure(confusion_figure(m, f"{k}: accuracy {m['accuracy']:.3f}"), f"Confusion matrix, {k}",
                             name=f"confusion-{k}") for k, m in models.items()]))
    if tables:
        sec.add(figure(training_curves_figure(tables), "Training curves (per level for hiwl)",
                       name="training-curves"))
    for k, p in predictions.items():
        imgs, titles = confident_mistakes(pd.read_parquet(p), images, n_mistakes)
        sec.add(image_grid(imgs, titles, caption=f"Most confident mistakes of {k}", label=k, name=f"mistakes-{k}"))
    if applied:
        sec.add(table(applied_table(applied, applied_tables, first["classes"]),
                      caption="Other catalogues classified (classify.apply_to): galaxies per predicted class; "
                      "the unreadable images skipped are listed in the classify_catalogue log",
                      name="other-catalogues"))
    write_fragment(sec, out, figures=figures_dir, tables=tables_dir)
    return sec
