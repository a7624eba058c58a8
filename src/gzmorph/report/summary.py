"""The headline figures of one finished run as a short Markdown table.

``python -m gzmorph.report.summary results/<dataset> [--readme README.md]`` prints the table, or
writes it into the README between the markers ``<!-- results:begin -->`` and
``<!-- results:end -->``, so that the README's results table is regenerated from a run's own
outputs rather than copied by hand.  Stages the run did not produce are left out.  It reads every
result in the folder: a folder that also holds the results of an earlier config (an IPC, a model or
a stage that config no longer asks for) shows them too, so regenerate the README's table from a
folder of one config's run.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"


def _read(path: Path):
    return json.loads(path.read_text()) if path.is_file() else None


def _pm(mean: float, sd: float | None = None) -> str:
    return f"{mean:.3f}" if not sd else f"{mean:.3f} ± {sd:.3f}"


def classification_rows(run: Path) -> list[tuple[str, str, str]]:
    rows = []
    for model in ("hiwl", "flat"):
        m = _read(run / "classify" / model / "metrics.json")
        if m:
            rows.append((f"classification, {model}", f"test accuracy (macro F1), {m['n_test']} galaxies",
                         f"{m['accuracy']:.3f} ({m['macro_f1']:.3f})"))
    return rows


def _balanced(d: dict) -> str:
    """`` / <balanced accuracy>`` of an eval.json record, where it has one (older files: "")."""
    return f" / {d['balanced_accuracy_mean']:.3f}" if "balanced_accuracy_mean" in d else ""


def distillation_rows(run: Path) -> list[tuple[str, str, str]]:
    rows = []
    evals = [_read(p) for p in (run / "distill").glob("*/ipc*/eval.json")]
    for e in sorted(evals, key=lambda e: (e["method"], int(e["ipc"]))):  # IPC 1, 2, 10: not as text
        b = e["baselines"]
        distilled = _pm(e["accuracy_mean"], e["accuracy_sd"]) + _balanced(e)
        rows.append((f"distillation, {e['method']} IPC {e['ipc']}", "test accuracy / balanced (random; full data)",
                     f"{distilled} ({b['random']['mean']:.3f}{_balanced(b['random'])}; "
                     f"{b['full']['mean']:.3f}{_balanced(b['full'])})"))
    return rows


def representation_rows(run: Path) -> list[tuple[str, str, str]]:
    rows = []
    s = _read(run / "similarity" / "metrics.json")
    if s:
        rows.append(("similarity search", f"precision@{s['k']} (base rate)",
                     f"{s['precision_at_k']:.3f} ({s['base_rate']:.3f})"))
    a = _read(run / "anomalies" / "metrics.json")
    if a:
        ap = {m: r["average_precision"] for m, r in a["methods"].items()}
        rows.append(("anomalies", f"average precision, GP / Astronomaly ({a['n_anomalies']} anomalies)",
                     f"{_pm(ap['gp']['mean'], ap['gp']['sd'])} / "
                     f"{_pm(ap['astronomaly']['mean'], ap['astronomaly']['sd'])}"))
    f = _read(run / "finetune" / "metrics.json")
    if f and f.get("budgets"):
        b = str(min(f["budgets"]))
        arms = {arm: r[b]["accuracy_mean"] for arm, r in f["arms"].items() if b in r}
        task = "ring vs not ring" if f.get("label", "rings") == "rings" else f["task"]
        rows.append((f"fine-tuning ({task})", f"test accuracy at {b} labels per class, "
                     + " / ".join(arms), " / ".join(f"{v:.3f}" for v in arms.values())))
    return rows


def provenance(run: Path) -> str:
    """Which code and when: the code version of the package that writes the table
    (:func:`gzmorph.codedeps.package_hash`) and the date of the newest metrics file it reads.  After a
    finished ``snakemake`` run with this code every result belongs to it: each rule reran when a
    module it imports changed (the other modules cannot change its result)."""
    import datetime as dt

    from ..codedeps import package_hash

    files = [p for p in (*run.glob("classify/*/metrics.json"), *run.glob("distill/*/ipc*/eval.json"),
                         *(run / d / "metrics.json" for d in ("similarity", "anomalies", "finetune"))) if p.is_file()]
    newest = max((p.stat().st_mtime for p in files), default=None)
    when = dt.datetime.fromtimestamp(newest, dt.timezone.utc).strftime("%Y-%m-%d") if newest else "no results"
    return f"table written by gzmorph code {package_hash()}, newest result {when}"


def results_table(run: str | Path) -> str:
    """The Markdown table of ``run`` (a ``results/<dataset>`` folder)."""
    run = Path(run)
    rows = classification_rows(run) + distillation_rows(run) + representation_rows(run)
    lines = [f"Run `{run.name}` ({provenance(run)}):", "", "| stage | figure | value |", "|---|---|---|"]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in rows]
    return "\n".join(lines) + "\n"


def update_readme(readme: str | Path, run: str | Path) -> None:
    """Replace the README's table between the result markers with ``run``'s (none is written for a
    folder without results: a mistyped or missing run left an empty table)."""
    readme, run = Path(readme), Path(run)
    if not (classification_rows(run) or distillation_rows(run) or representation_rows(run)):
        raise ValueError(f"{run}: no results (no classify, distill, similarity, anomalies or finetune metrics); "
                         "the README is left as it was")
    text = readme.read_text()
    if BEGIN not in text or END not in text:
        raise ValueError(f"{readme}: no {BEGIN} ... {END} block to update")
    head, rest = text.split(BEGIN, 1)
    tail = rest.split(END, 1)[1]
    readme.write_text(f"{head}{BEGIN}\n{results_table(run)}{END}{tail}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gzmorph.report.summary", description=__doc__.split("\n")[0])
    parser.add_argument("run", help="a finished run's folder, results/<dataset>")
    parser.add_argument("--readme", help="write the table into this README between the result markers")
    args = parser.parse_args(argv)
    if args.readme:
        try:
            update_readme(args.readme, args.run)
        except (OSError, ValueError) as err:
            print(f"gzmorph.report.summary: {err}", file=sys.stderr)
            return 2
    else:
        sys.stdout.write(results_table(args.run))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
