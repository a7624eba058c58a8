"""The distillation report section: prototype grids, accuracy against the baselines, STM stage
curves, matching loss and learned step size, expert accuracies."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from . import ORDER, Section, class_grid, figure, new_figure, note, paragraph, table, write_fragment


def distill_section(evals: list[dict], grids: dict, histories: dict, stage_logs: dict, expert_histories=None,
                    precision: dict | None = None):
    """Report section: prototype grids, accuracy table vs baselines, STM stage curves, loss and α curves;
    ``precision``: how each set's student steps ran (``distill.amp``, ``distill.channels_last``)."""
    sec = Section("Dataset distillation", anchor="distillation", order=ORDER["distillation"],
                  summary="expert trajectories → synthetic prototypes (MTT / STM)")
    sec.add(paragraph(
        "Synthetic galaxies distilled by matching expert training trajectories (MTT; STM with its "
        "self-adaptive schedule). Each row of a grid is one class; images start from real training "
        "galaxies. Accuracy: fresh ConvNets trained only on the synthetic set, tested on the real test split, "
        "against `random` real images, `mean` class-mean images and the full training set."))
    rows = accuracy_rows(evals)
    if rows:
        sec.add(table(rows, caption="Test accuracy, plain / balanced (mean ± sd over evaluation nets): the "
                      "distilled set beside random real images, class-mean images and the full training set, "
                      "each trained by the same protocol, and the experts' own final accuracy",
                      name="accuracy"))
    else:
        sec.add(note("no distillation results", kind="warn"))
    full = next((ev["baselines"]["full"].get("training") for ev in evals if "full" in ev.get("baselines", {})), None)
    if full:  # whether the full-data nets converged: stopped on validation, or ran out of epochs
        capped = [n for n in full["nets"] if not n["stopped_early"]]
        sec.add(note(f"Full-data nets: {len(full['nets']) - len(capped)} of {len(full['nets'])} stopped on the "
                     f"validation split ({full['patience']} epochs without a better accuracy); epochs run "
                     f"{', '.join(str(n['epochs_run']) for n in full['nets'])} of at most {full['epochs_cap']}"
                     + (" (distill.eval.full_epochs: a net that reaches it may not have converged)." if capped
                        else "."), kind="warn" if capped else "info"))
    not_default = {k: v for k, v in (precision or {}).items() if v != "float32"}
    if not_default:
        sec.add(note("Sets whose student steps ran with distill.amp or distill.channels_last: "
                     + "; ".join(f"{k}: {v}" for k, v in not_default.items()) + "."))
    for key, (u8, titles) in grids.items():  # one row per class, one column per image
        classes = list(dict.fromkeys(titles))
        rows = [(c, [img for img, t in zip(u8, titles) if t == c]) for c in classes]
        sec.add(class_grid(rows, caption=f"Prototypes {key}: one row per class", cell_px=72, label=key,
                           name=f"prototypes-{key}"))
    for key, st in stage_logs.items():
        if not st:
            continue
        fig = new_figure((6.4, 3.2))
        ax = fig.add_subplot(1, 1, 1)
        it = [r["iteration"] for r in st]
        ax.plot(it, [r["next_epoch_loss"] for r in st], ".", ms=3, label="next-epoch loss")
        ax.set_xlabel("iteration")
        ax.set_ylabel("next-epoch matching loss")
        ax2 = ax.twinx()
        ax2.step(it, [r["cap"] for r in st], where="post", color="C3", label="start-epoch cap")
        ax2.set_ylabel("cap")
        sec.add(figure(fig, f"STM stages {key}: cap and next-epoch loss", name=f"stm-stages-{key}"))
    for key, h in histories.items():
        if not h:
            continue
        fig = new_figure((6.4, 2.8))
        ax = fig.add_subplot(1, 2, 1)
        ax.plot([r["iteration"] for r in h], [r["loss"] for r in h], lw=0.8)
        ax.set_xlabel("iteration")
        ax.set_ylabel("matching loss")
        ax = fig.add_subplot(1, 2, 2)
        ax.plot([r["iteration"] for r in h], [r["alpha"] for r in h], lw=0.8, color="C2")
        ax.set_xlabel("iteration")
        ax.set_ylabel("α")
        sec.add(figure(fig, f"Loss and learned step size {key}", name=f"loss-{key}"))
    if expert_histories:
        sec.add(table(expert_histories, caption="Experts: final train accuracy, test accuracy and balanced accuracy", name="experts"))
    return sec


def _pm(mean, sd) -> str:
    return "–" if mean is None else f"{mean:.3f} ± {sd or 0.0:.3f}"


def _sd(runs) -> float:
    """The sample sd (ddof 1) of ``runs``, as ``accuracy_sd``; 0 for fewer than two."""
    return float(np.std(runs, ddof=1)) if runs and len(runs) > 1 else 0.0


def accuracy_rows(evals: list[dict]) -> list[dict]:
    """One row per method × IPC (ordered so), with the image size in px it was distilled at, and two
    columns per set: plain and balanced test accuracy of the distilled set, of the ``random``/``mean``/``full``
    baselines and of the experts."""
    rows = []
    for ev in sorted(evals, key=lambda e: (e["method"], int(e["ipc"]))):
        row = {"method": ev["method"], "IPC": int(ev["ipc"]), "px": ev["image_size"],
               "distilled": _pm(ev["accuracy_mean"], ev["accuracy_sd"]),
               "distilled (balanced)": _pm(ev.get("balanced_accuracy_mean"), ev.get("balanced_accuracy_sd"))}
        for name, b in ev["baselines"].items():
            row[name] = _pm(b["mean"], b["sd"])
            row[f"{name} (balanced)"] = _pm(b.get("balanced_accuracy_mean"), b.get("balanced_accuracy_sd"))
        ex = ev.get("experts_final_test_accuracy") or {}
        if ex:
            row["experts"] = _pm(ex["mean"], _sd(ex.get("runs")))
            row["experts (balanced)"] = _pm(ex.get("balanced_accuracy_mean"), _sd(ex.get("balanced_accuracy_runs")))
        row["test galaxies"] = ev["n_test"]
        if ev.get("accuracy_runs"):  # the nets each mean ± sd is over
            row["nets"] = len(ev["accuracy_runs"])
        rows.append(row)
    return rows


def report_section(eval_paths, synthetic_paths, expert_history_paths, out_path, *, figures_dir=None,
                   tables_dir=None) -> Path:
    """Read the stage's outputs (``eval.json``, ``synthetic.pt``, expert ``.tsv`` histories) and
    write the section fragment to ``out_path`` (and its figures and tables into the folders
    ``figures_dir`` and ``tables_dir``, see :func:`write_fragment`)."""
    import pandas as pd

    from ..augment import BatchTransform
    from ..distill import load_synthetic, to_uint8
    from ..io import read_json

    evals = [read_json(p) for p in eval_paths]
    grids, histories, stages, precision = {}, {}, {}, {}
    for path in synthetic_paths:
        s = load_synthetic(path)
        key = f"{s['method']} ipc {s['ipc']}"
        grids[key] = (to_uint8(s["images"], BatchTransform(s["mean"], s["std"])),
                      [s["classes"][int(i)] for i in s["labels"]])
        histories[key] = s["history"]
        run = s.get("config") or {}
        precision[key] = ("bf16 autocast" if run.get("amp") == "bf16" else "float32") + (
            ", channels-last" if run.get("channels_last") else "")
        if s["method"] == "stm":
            stages[key] = s["stage_log"]
    experts = []
    for p in map(str, expert_history_paths):
        h = pd.read_csv(p, sep="\t")
        experts.append({"expert": p.rsplit("/", 1)[-1].removesuffix(".tsv"), "epochs": len(h),
                        "train_accuracy": round(float(h["train_accuracy"].iloc[-1]), 4),
                        "test_accuracy": round(float(h["test_accuracy"].iloc[-1]), 4),
                        **({"test_balanced_accuracy": round(float(h["test_balanced_accuracy"].iloc[-1]), 4)}
                           if "test_balanced_accuracy" in h.columns else {})})
    return write_fragment(distill_section(evals, grids, histories, stages, experts, precision), out_path,
                          figures=figures_dir, tables=tables_dir)
