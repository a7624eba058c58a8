"""End-to-end: the real `snakemake` command on tiny configs, in a copy of the workflow."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pandas as pd
import pytest
import yaml
from workdirs import copy_workflow

from gzmorph.curate import read_catalogue
from gzmorph.imageset import read_images

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake"]
pytestmark = pytest.mark.e2e

# every stage at toy scale: the point is that the whole DAG runs, not the numbers
# real-data runs build the curation outputs and its report section (the later stages are tested
# on synthetic data above and in their own unit tests)
CURATION = ("curated/catalogue.parquet", "report/sections/curation.html")


def curation_targets(dataset):
    return [f"results/{dataset}/{t}" for t in CURATION]


TINY = {"synthetic": {"n_galaxies": 150, "stamp_size": 96}, "image_size": 32,
        "report": {"examples_per_class": 4},
        "classify": {"epochs": 2, "patience": 0},
        "distill": {"n_experts": 1, "expert": {"epochs": 2}, "mtt": {"iterations": 4, "max_start_epoch": 1,
                                                                       "expert_epochs": 1},
                    "stm": {"iterations": 4}, "eval": {"n_nets": 1, "epochs": 10, "full_epochs": 2}},
        "represent": {"epochs": 1, "anomalies": {"seeds": 1, "budget": 30},
                      "finetune": {"seeds": 1, "steps": 5, "head_steps": 20, "min_budget": 2}}}




def smk(workdir: Path, *args, config: dict | None = None, check: bool = True):
    cmd = [*SNAKEMAKE, "--cores", "2", *args]
    if config:
        (workdir / "test-config.yaml").write_text(yaml.safe_dump(config))
        cmd += ["--configfile", "config.yaml", "test-config.yaml"]
    # the copy's own library runs (an edit there is what runs, as the workflow's check demands)
    path = os.pathsep.join(p for p in (str(workdir / "src"), os.environ.get("PYTHONPATH", "")) if p)
    # every distillation iteration checkpoints (the rule's resume wiring runs in every workflow test)
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": path, "GZMORPH_DISTILL_CHECKPOINT_SECONDS": "0"}
    out = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, env=env, timeout=900)
    if check and out.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({out.returncode}):\n{out.stdout[-3000:]}\n{out.stderr[-6000:]}")
    return out


def planned_jobs(out) -> dict[str, int]:
    """Rule -> job count from a dry run's 'Job stats' table."""
    text = out.stdout + out.stderr
    if "Nothing to be done" in text:
        return {}
    table = text.split("Job stats:", 1)[1]
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.M)
            if m.group(1) != "total"}


@pytest.fixture(scope="module")
def synthetic_run(tmp_path_factory):
    wd = copy_workflow(tmp_path_factory.mktemp("synthetic"))
    smk(wd, config=TINY)
    return wd


def test_synthetic_run_writes_curated_parquet_and_report(synthetic_run):
    res = synthetic_run / "results" / "synthetic-hiwl5"
    cat, classes = read_catalogue(res / "curated" / "catalogue.parquet")
    assert classes == ["round", "in-between", "cigar", "edge-on", "spiral"]
    for col in ("id", "label", "label_name", "confidence", "split", "Class1.1", "Class11.6",
                "image_path", "true_answers", "true_label", "true_morphology"):
        assert col in cat.columns, col
    assert set(cat["split"]) == {"train", "val", "test"}
    ids, images = read_images(res / "curated" / "images.parquet")
    assert sorted(ids) == sorted(cat["id"]) and images.shape[1:] == (32, 32, 3)
    for out in ("classify/hiwl/metrics.json", "classify/flat/metrics.json", "distill/mtt/ipc1/eval.json",
                "distill/stm/ipc1/eval.json", "similarity/metrics.json", "anomalies/metrics.json",
                "finetune/metrics.json", "embed/embeddings.parquet"):
        assert (res / out).exists(), out
    stats = json.loads((res / "curated" / "stats.json").read_text())
    assert stats["n_source"] == 150 and stats["truth_match"] >= 0.9
    html = (res / "report" / "index.html").read_text()
    assert "Curation" in html and "truth" in html.lower() and 'src="http' not in html
    from gzmorph.codedeps import package_hash

    # a printed page names its run: the code version, seed and cut beside the dataset
    for fact, value in (("code", package_hash()), ("seed", "42"), ("cut", "hiwl5")):
        assert f'<span class="gz-fact-k">{fact}</span><span class="gz-fact-v">{value}</span>' in html, fact
    for anchor in ("classification", "distillation", "represent-embeddings", "represent-similarity",
                   "represent-anomalies", "represent-finetune"):
        assert f'id="{anchor}"' in html, anchor
    for rule in ("simulate_galaxies", "select", "preprocess_images", "split", "report"):
        assert (res / "logs" / f"{rule}.log").exists() and (res / "benchmarks" / f"{rule}.tsv").exists()
    assert "synthetic galaxies" in (res / "logs" / "simulate_galaxies.log").read_text()  # tqdm progress
    # the distill job reads distill.keep_freed_memory (off in the default preset) before torch is imported
    assert "allocator: glibc's own (keep_freed_memory: false)" in (res / "logs" / "distill_mtt_ipc1.log").read_text()


def test_results_table_is_built_from_the_run(synthetic_run, tmp_path):
    from gzmorph.report.summary import BEGIN, END, results_table, update_readme

    res = synthetic_run / "results" / "synthetic-hiwl5"
    table = results_table(res)
    for stage in ("classification, hiwl", "classification, flat", "distillation, mtt IPC 1",
                  "distillation, stm IPC 1", "similarity search", "anomalies", "fine-tuning"):
        assert f"| {stage}" in table, stage
    from gzmorph.codedeps import package_hash

    assert table.startswith(f"Run `synthetic-hiwl5` (table written by gzmorph code {package_hash()}, newest result 20")
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n\n{BEGIN}\nold\n{END}\n\nafter\n")
    update_readme(readme, res)
    update_readme(readme, res)  # idempotent
    assert readme.read_text() == f"# x\n\n{BEGIN}\n{table}{END}\n\nafter\n"


# every figure of the default run's HTML report, by the category (and subcategory) of Snakemake's own
# report that shows it; (the similarity queries are one per class: query-<class>-<id>.png)
REPORT_FIGURES = {
    ("Curation", "figures"): {"counts.png", "confidence.png"} | {
        f"examples-{c}-{kind}.png" for c in ("round", "in-between", "cigar", "edge-on", "spiral")
        for kind in ("confident", "random")},
    ("Classification", "figures"): {"confusion-hiwl.png", "confusion-flat.png", "training-curves.png",
                                    "mistakes-hiwl.png", "mistakes-flat.png"},
    ("Distillation", "figures"): {"prototypes-mtt-ipc-1.png", "prototypes-stm-ipc-1.png", "loss-mtt-ipc-1.png",
                                  "loss-stm-ipc-1.png", "stm-stages-stm-ipc-1.png"},
    ("Representation", "embeddings"): {"embedding-map.png", "training-curve.png"},
    ("Representation", "similarity"): {"query-round", "query-in-between", "query-cigar", "query-edge-on",
                                       "query-spiral"},
    ("Representation", "anomalies"): {"precision-curve.png", "top-gp.png", "top-astronomaly.png"},
    ("Representation", "finetune"): {"label-efficiency.png"},
}
# section fragment -> (category, subcategory of its figures, subcategory of its tables)
REPORT_SECTIONS = {"curation": ("Curation", "figures", "tables"),
                   "classification": ("Classification", "figures", "tables"),
                   "distillation": ("Distillation", "figures", "tables"),
                   **{f"represent_{p}": ("Representation", p, p)
                      for p in ("embeddings", "similarity", "anomalies", "finetune")}}


def test_snakemake_report_holds_every_figure_by_category(synthetic_run):
    """`snakemake --report report.zip` after the run (same config): Snakemake's own report holds every
    figure and table of the HTML report, as a file under the category of its stage, with a caption."""
    smk(synthetic_run, "--report", "report.zip", config=TINY)
    res = synthetic_run / "results" / "synthetic-hiwl5"
    with zipfile.ZipFile(synthetic_run / "report.zip") as z:
        page = z.read("report/report.html").decode()
        data = {n.split("/", 3)[3]: z.read(n) for n in z.namelist() if n.startswith("report/data/raw/")}
    categories = json.loads(re.search(r"var categories = (\{.*?\});\s*\n", page).group(1))
    results = json.loads(re.search(r"var results = (\{.*?\});\s*\n", page).group(1))
    assert set(categories) == {"Curation", "Classification", "Distillation", "Representation", "Report"}
    assert set(categories["Representation"]) == {"embeddings", "similarity", "anomalies", "finetune"}
    shown = {(c, s): {Path(p).name for p in paths} for c, subs in categories.items() for s, paths in subs.items()}
    for key, names in REPORT_FIGURES.items():
        pngs = {n for n in shown.get(key, ()) if n.endswith(".png")}
        missing = {n for n in names if not any(p == n or p.startswith(f"{n}-") for p in pngs)}
        assert not missing, f"{key}: not in Snakemake's report: {sorted(missing)}"
    assert shown[("Report", "Other")] == {"index.html"}

    for section, (category, fig_sub, tab_sub) in REPORT_SECTIONS.items():
        html = (res / "report" / "sections" / f"{section}.html").read_text()
        n_figures = html.count('<figure class="gz-figure">') + html.count('<figure class="gz-grid-figure">')
        n_tables = html.count('<table class="gz-table">') + html.count('<div class="gz-metrics">')
        for folder, sub, suffix, n in (("figures", fig_sub, ".png", n_figures), ("tables", tab_sub, ".tsv", n_tables)):
            files = sorted(p.name for p in (res / "report" / folder / section).glob(f"*{suffix}"))
            in_report = sorted(Path(p).name for p in categories[category][sub]
                               if f"/report/{folder}/{section}/" in p)
            assert len(files) == n > 0 and in_report == files, (section, folder, n, files, in_report)
    for path, item in results.items():  # every file is in the zip, with its caption
        if path.endswith(".html"):
            continue
        payload = data[item["data_uri"].removeprefix("data/raw/")]
        assert payload == (synthetic_run / path).read_bytes() and payload
        if path.endswith(".png"):
            assert payload.startswith(b"\x89PNG")
        assert item["caption"] and "Error" not in item["caption"], path
    caption = results[str(next(res.glob("report/figures/curation/examples-*.png")).relative_to(synthetic_run))]
    assert "report.examples_per_class" in caption["caption"] and "hiwl5" in caption["caption"]
    caption = results["results/synthetic-hiwl5/report/figures/represent_anomalies/top-gp.png"]["caption"]
    assert "anomalies" in caption and "top-gp" in caption and "embedding-map" not in caption


def test_nothing_to_do_when_nothing_changed(synthetic_run):
    assert planned_jobs(smk(synthetic_run, "-n", config=TINY)) == {}
    # a cut this run does not use, defined or edited: every cut went to select as a param, and
    # rerunning it retrained everything downstream; now only the page that shows the config is redone
    unused = {"cuts": {"few": {"classes": {"smooth": ["Class1.1 > 0.5"], "featured": ["Class1.2 > 0.5"]}}}}
    assert planned_jobs(smk(synthetic_run, "-n", config={**TINY, **unused})) == {"report": 1, "all": 1}


def test_parameter_change_reruns_only_affected_rules(synthetic_run):
    jobs = planned_jobs(smk(synthetic_run, "-n", config={**TINY, "report": {"examples_per_class": 5}}))
    assert set(jobs) == {"report_curation", "report", "all"}
    jobs = planned_jobs(smk(synthetic_run, "-n", config={**TINY, "classify": {**TINY["classify"], "lr": 0.01}}))
    assert set(jobs) == {"train_classifier", "evaluate_classifier", "report_classification", "report", "all"}
    # a bool turned on beside another true and another false (distill's augment, channels_last): Snakemake
    # records bare params as a set of reprs, which this change leaves as it was; named() keeps the names
    jobs = planned_jobs(smk(synthetic_run, "-n", config={**TINY, "distill": {**TINY["distill"],
                                                                            "keep_freed_memory": True}}))
    assert set(jobs) == {"distill", "evaluate_distilled", "report_distill", "report", "all"}


def test_every_job_records_its_settings_by_name(synthetic_run):
    """Snakemake compares a job's recorded params as a set of reprs: two params with one repr make a
    change of either invisible whenever the other keeps the old value. Every rule keeps its settings
    in one named() dict, so no recorded job has two params of one repr."""
    records = [json.loads(f.read_text()) for f in (synthetic_run / ".snakemake" / "metadata").iterdir()]
    records = [r for r in records if r.get("params")]
    assert len({r["rule"] for r in records}) >= 20
    for r in records:
        assert len(set(r["params"])) == len(r["params"]), (r["rule"], r["params"])


def rule_scripts(workdir: Path) -> dict[str, str]:
    """Rule name -> the stem of its script, read from the .smk files."""
    out, derived = {}, {}
    for f in (workdir / "workflow" / "rules").glob("*.smk"):
        text = f.read_text()
        for m in re.finditer(r'^\s*rule (\w+):.*?script:\s*"\.\./scripts/(\w+)\.py"', text, re.M | re.S):
            out[m.group(1)] = m.group(2)
        derived.update((m.group(2), m.group(1)) for m in re.finditer(r"^use rule (\w+) as (\w+)", text, re.M))
    return out | {new: out[base] for new, base in derived.items()}


def rule_edges(workdir: Path, config: dict) -> list[tuple[str, str]]:
    """(producer, consumer) rule pairs of the whole DAG, from ``snakemake --rulegraph``."""
    dot = smk(workdir, "--rulegraph", "-F", config=config).stdout
    names = dict(re.findall(r'^\s*(\d+)\[label = "(\w+)"', dot, re.M))
    return [(names[a], names[b]) for a, b in re.findall(r"^\s*(\d+) -> (\d+)", dot, re.M)]


def downstream(edges, rules: set[str]) -> set[str]:
    """``rules`` and every rule that consumes their outputs, directly or not."""
    out, todo = set(rules), list(rules)
    while todo:
        r = todo.pop()
        for a, b in edges:
            if a == r and b not in out:
                out.add(b)
                todo.append(b)
    return out


def job_inputs(out) -> dict[str, set[str]]:
    """Rule -> every input file of its jobs, from the ``input:`` lines of a dry run."""
    inputs: dict[str, set[str]] = {}
    for m in re.finditer(r"^rule (\w+):\n\s+input: (.*)$", out.stdout + out.stderr, re.M):
        inputs.setdefault(m.group(1), set()).update(p.strip() for p in m.group(2).split(","))
    return inputs


#: modules edited for real in the sweep below, one per kind: shared by every trained network, the
#: streaming store, a source reader, a compute module of one stage, report code, a package __init__
EDITED_FOR_REAL = ("augment.py", "stream.py", "sources/synthetic/render.py", "similarity.py",
                   "report/figures.py", "report/__init__.py")


def test_each_module_edit_reruns_exactly_the_rules_importing_it(synthetic_run):
    """Every library module is a code input of exactly the rules whose scripts import it (directly
    or transitively), so a content change plans those rules and what consumes their outputs, nothing
    else.  The inputs of every job come from one forced dry run; a content change of one module of
    each kind then shows Snakemake planning exactly that set."""
    from gzmorph.codedeps import import_closure, library_modules

    src = synthetic_run / "src"
    scripts = rule_scripts(synthetic_run)
    forced = smk(synthetic_run, "-n", "-F", config=TINY)
    in_run = set(planned_jobs(forced)) - {"all"}
    inputs = job_inputs(forced)
    edges = rule_edges(synthetic_run, TINY)
    closure = {r: set(import_closure(synthetic_run / "workflow" / "scripts" / f"{scripts[r]}.py", src))
               for r in in_run}
    modules = library_modules(src)
    pairs = 0
    for module in modules:
        importers = {r for r in in_run if str(module) in closure[r]}
        # declared relative to the project folder (a moved folder reruns nothing)
        declared = {r for r in in_run if os.path.relpath(module, synthetic_run) in inputs.get(r, set())}
        assert declared == importers, module
        pairs += len(importers)
    assert pairs > 100 and len(in_run) >= 20 and len(modules) > 60  # every rule and module was checked
    for name in EDITED_FOR_REAL:
        module = src / "gzmorph" / name
        importers = {r for r in in_run if str(module) in closure[r]}
        assert importers, name
        text = module.read_text()
        module.write_text(text + "\n# edited\n")
        try:
            planned = set(planned_jobs(smk(synthetic_run, "-n", config=TINY))) - {"all"}
        finally:
            module.write_text(text)
        assert planned == downstream(edges, importers) - {"all"}, module
    assert planned_jobs(smk(synthetic_run, "-n", config=TINY)) == {}  # the originals back: nothing to do


def test_one_module_edit_plans_its_rules_and_what_follows_them(synthetic_run):
    lib = synthetic_run / "src" / "gzmorph" / "augment.py"
    text = lib.read_text()
    lib.write_text(text + "\n# edited\n")
    try:
        jobs = planned_jobs(smk(synthetic_run, "-n", config=TINY))
    finally:
        lib.write_text(text)
    # the networks trained with this augmentation (classifiers, experts, distillation and its
    # evaluations, the representation) and what follows them; never the curation upstream
    assert {"train_classifier", "train_expert", "distill", "evaluate_baseline", "evaluate_full",
            "evaluate_distilled", "train_representation", "report"} <= set(jobs)
    assert not {"simulate_galaxies", "source_table", "select", "preprocess_images", "split"} & set(jobs)


def test_a_replaced_image_reruns_preprocessing(synthetic_run):
    """A replaced image reruns the rules that decode images, but the manifest is not rewritten while
    another Snakemake run holds it (a dry run beside a real one): that run would record the rewritten
    manifest for a store decoded from the old image, and the next run would see nothing to do."""
    res = synthetic_run / "results" / "synthetic-hiwl5"
    first, second = sorted((res / "source" / "synthetic").rglob("*.jpg"))[:2]
    original, st = first.read_bytes(), first.stat()
    first.write_bytes(second.read_bytes())
    manifest = res / "source" / "images.manifest.tsv"
    before = manifest.read_text()
    lock = synthetic_run / ".snakemake" / "locks" / "99.input.lock"  # another run holds the manifest
    lock.parent.mkdir(parents=True, exist_ok=True)
    lock.write_text(f"results/synthetic-hiwl5/curated/images.parquet\n{manifest.relative_to(synthetic_run)}\n")
    try:
        beside = smk(synthetic_run, "-n", config=TINY)
        lock.unlink()
        assert manifest.read_text() == before  # its jobs' record would otherwise take the new stat
        jobs = planned_jobs(smk(synthetic_run, "-n", config=TINY))
    finally:
        lock.unlink(missing_ok=True)
        first.write_bytes(original)
        os.utime(first, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert "another Snakemake run is using it" in beside.stdout + beside.stderr
    assert {"preprocess_images", "represent_images", "split", "train_classifier", "report"} <= set(jobs)
    assert not {"simulate_galaxies", "source_table", "select"} & set(jobs)
    assert planned_jobs(smk(synthetic_run, "-n", config=TINY)) == {}  # restored as it was: nothing to do


def test_a_project_folder_moved_as_a_whole_reruns_nothing(synthetic_run, tmp_path):
    """Results, simulated images and all copied elsewhere with their times (as `mv` or `cp -a`):
    the code, the data folder and every image are recorded relative to the project folder, so the
    copy plans what the original plans (nothing, when it is up to date); the code inputs and the
    manifest's absolute paths used to rerun every job there, and the catalogues pointed back."""
    moved = tmp_path / "moved"
    shutil.copytree(synthetic_run, moved, symlinks=True, copy_function=shutil.copy2)
    here = planned_jobs(smk(synthetic_run, "-n", config=TINY))
    assert planned_jobs(smk(moved, "-n", config=TINY)) == here
    assert not here, here
    res = "results/synthetic-hiwl5"
    manifest = (moved / res / "source" / "images.manifest.tsv").read_text().splitlines()
    assert manifest[1].split("\t")[2].startswith(f"{res}/source/synthetic/"), manifest[:2]


def test_another_catalogue_is_classified_and_reclassified_when_it_changes(synthetic_run, tiny_kaggle):
    """classify.apply_to: the catalogue is read once into its own table and image manifest; a
    replaced image reruns only the classification, an edited catalogue both (they were never
    declared: the rule's only inputs were the model and its code), even one older than the outputs
    (its content is a param: Snakemake's time comparison alone missed it)."""
    config = {**TINY, "classify": {**TINY["classify"], "apply_to": {
        "other": {"source": "kaggle", "data_dir": str(tiny_kaggle)}}}}
    smk(synthetic_run, config=config)
    res = synthetic_run / "results" / "synthetic-hiwl5"
    for model in ("hiwl", "flat"):
        pred = pd.read_parquet(res / "classify" / model / "apply" / "other.parquet")
        assert len(pred) == 60 and str(pred["id"].dtype) == "int64" and "p_cigar" in pred.columns
        counts = pred["pred_name"].value_counts()
    # the report's table of other catalogues: 60 galaxies, all classified, per class as predicted
    other = pd.read_csv(res / "report" / "tables" / "classification" / "other-catalogues.tsv", sep="\t")
    assert other[["catalogue", "model", "galaxies", "classified", "unreadable (skipped)"]].values.tolist() == [
        ["other", "hiwl", 60, 60, 0], ["other", "flat", 60, 60, 0]]
    assert other.iloc[1][list(counts.index)].tolist() == counts.tolist()  # flat's, the last read above
    assert "Other catalogues classified" in (res / "report" / "sections" / "classification.html").read_text()
    first, second = sorted((tiny_kaggle / "images_training_rev1").glob("*.jpg"))[:2]
    first.write_bytes(second.read_bytes())
    report = {"report_classification", "report", "all"}
    assert set(planned_jobs(smk(synthetic_run, "-n", config=config))) == {"classify_catalogue"} | report
    csv = tiny_kaggle / "training_solutions_rev1.csv"
    csv.write_text("\n".join(csv.read_text().splitlines()[:-1]) + "\n")
    os.utime(csv, (1e9, 1e9))  # edited, but older than every output (cp -p, rsync -a, an unpacked archive)
    assert set(planned_jobs(smk(synthetic_run, "-n", config=config))) == {"apply_source_table",
                                                                         "classify_catalogue"} | report


def test_the_distill_rule_checkpoints_into_its_work_folder_and_removes_it_when_done(synthetic_run):
    """The rule passes its work folder (a Slurm time-out restarted every distillation from iteration 0)
    and removes it once the outputs are written (only an unfinished run is ever resumed)."""
    res = synthetic_run / "results" / "synthetic-hiwl5"
    for method in ("mtt", "stm"):
        log = (res / "logs" / f"distill_{method}_ipc1.log").read_text()
        assert f"distill/{method}/ipc1.work/checkpoint.pt: checkpoint at iteration 1" in log, log[-2000:]
        assert (res / "distill" / method / "ipc1" / "synthetic.pt").is_file()
    assert not list((res / "distill").rglob("*.work")), list((res / "distill").rglob("*.work"))


def test_outputs_are_readable_as_the_umask_says(synthetic_run):
    umask = os.umask(0o022)
    os.umask(umask)
    files = [p for p in (synthetic_run / "results").rglob("*") if p.is_file()]
    assert len(files) > 50
    assert {str(p.relative_to(synthetic_run)): oct(p.stat().st_mode & 0o777) for p in files
            if p.stat().st_mode & 0o777 != 0o666 & ~umask} == {}


def test_single_target_builds_only_what_it_needs(tmp_path, kaggle_dir):
    wd = copy_workflow(tmp_path)
    cfg = {"source": "kaggle", "data_dir": str(kaggle_dir), "dataset": "k"}
    jobs = planned_jobs(smk(wd, "-n", "results/k/curated/selection.parquet", config=cfg))
    assert jobs == {"source_table": 1, "select": 1}


def test_kaggle_hiwl5_real_sample_exact_counts(tmp_path, kaggle_dir):
    wd = copy_workflow(tmp_path)
    smk(wd, *curation_targets("kaggle-hiwl5"), config={"source": "kaggle", "data_dir": str(kaggle_dir), "cut": "hiwl5"})
    raw = pd.read_csv(kaggle_dir / "training_solutions_rev1.csv")
    s, f = raw["Class1.1"] > 0.469, raw["Class1.2"] > 0.430
    expected = {"round": s & (raw["Class7.1"] > 0.5), "in-between": s & (raw["Class7.2"] > 0.5),
                "cigar": s & (raw["Class7.3"] > 0.5), "edge-on": f & (raw["Class2.1"] > 0.602),
                "spiral": f & (raw["Class2.2"] > 0.715) & (raw["Class4.1"] > 0.619)}
    cat, classes = read_catalogue(wd / "results/kaggle-hiwl5/curated/catalogue.parquet")
    assert classes == list(expected)
    for name, mask in expected.items():
        assert set(cat["id"][cat["label_name"] == name]) == set(raw["GalaxyID"][mask]), name
    assert (wd / "results/kaggle-hiwl5/report/sections/curation.html").stat().st_size > 10_000


def test_gz2_guan9_real_sample(tmp_path, gz2_dir):
    wd = copy_workflow(tmp_path)
    smk(wd, *curation_targets("gz2-guan9"), config={"source": "gz2", "data_dir": str(gz2_dir), "cut": "guan9"})
    cat, classes = read_catalogue(wd / "results/gz2-guan9/curated/catalogue.parquet")
    assert len(classes) == 9 and set(cat["label_name"]) == set(classes) and len(cat) == 500
    assert (wd / "results/gz2-guan9/report/sections/curation.html").exists()


@pytest.mark.parametrize("config_args, message", [
    (["colour=red"], r"config colour: unknown key; known keys: classify, "),
    (["seeds=1"], r"config seeds: unknown key; did you mean 'seed'\? \(workflow/schemas/config.schema.yaml\)"),
    (["image_size=big"], r"config image_size: 'big' is not of type 'integer' \(workflow/schemas/"),
    (["source=sdss"], r"config source: 'sdss' is not one of \['synthetic', 'kaggle', 'gz2', 'table'\]"),
    (["cut=zhu7"], r"config cut: 'zhu7' is not a named cut"),
    (["dataset=.."], r"config dataset: '\.\.' is not a safe name"),
])
def test_bad_config_is_one_clear_error(tmp_path, config_args, message):
    wd = copy_workflow(tmp_path)
    out = smk(wd, "--config", *config_args, check=False)
    assert out.returncode != 0
    assert re.search(message, out.stdout + out.stderr), (out.stdout + out.stderr)[-3000:]
    assert not list(wd.glob("results/*/curated/*.parquet"))


def test_bad_catalogue_fails_cleanly_with_no_output(tmp_path, tiny_kaggle):
    csv = tiny_kaggle / "training_solutions_rev1.csv"
    lines = csv.read_text().splitlines()
    cells = lines[7].split(",")
    cells[5] = "nan"
    lines[7] = ",".join(cells)
    csv.write_text("\n".join(lines) + "\n")
    wd = copy_workflow(tmp_path / "wf")
    out = smk(wd, *curation_targets("bad"), config={"source": "kaggle", "data_dir": str(tiny_kaggle), "dataset": "bad"},
              check=False)
    assert out.returncode != 0
    assert "line 8, column 'Class2.2'" in out.stderr + out.stdout
    assert not (wd / "results/bad/source/catalogue.parquet").exists()
    assert not [p for p in (wd / "results/bad").rglob("*.parquet")]


def test_corrupt_images_are_skipped_below_the_limit_and_fatal_above(tmp_path, tiny_kaggle):
    wd = copy_workflow(tmp_path / "wf")
    cfg = {"source": "kaggle", "data_dir": str(tiny_kaggle), "dataset": "c", "max_bad_image_fraction": 0.1,
           "cut": "few", "cuts": {"few": {"classes": {"smooth": ["Class1.1 > 0.5"], "featured": ["Class1.2 > 0.5"]}}}}
    first = sorted((tiny_kaggle / "images_training_rev1").glob("*.jpg"))[0]
    first.write_bytes(b"\xff\xd8 broken")
    smk(wd, *curation_targets("c"), config=cfg)
    stats = json.loads((wd / "results/c/curated/stats.json").read_text())
    assert stats["n_corrupt_images"] == 1 and stats["corrupt_ids"] == [int(first.stem)]
    cat, _ = read_catalogue(wd / "results/c/curated/catalogue.parquet")
    assert int(first.stem) not in set(cat["id"])
    assert "Corrupt images" in (wd / "results/c/report/sections/curation.html").read_text()

    out = smk(wd, *curation_targets("c0"), config={**cfg, "dataset": "c0", "max_bad_image_fraction": 0.0},
              check=False)
    assert out.returncode != 0 and f"{first.name}: cannot decode image" in out.stdout + out.stderr
    assert not (wd / "results/c0/curated/images.parquet").exists()


def test_a_target_the_configuration_cannot_make_has_no_rule(tmp_path):
    """A path named on the command line that the config cannot produce fails at DAG build, naming
    it: the hierarchy for another cut than hiwl5 (it was a job that failed after curation), ipc 0
    and ipc01 (a second copy of ipc1 under another name)."""
    wd = copy_workflow(tmp_path)
    for target, config in (("results/synthetic-guan9/classify/hiwl/metrics.json", ["--config", "cut=guan9"]),
                           ("results/synthetic-hiwl5/distill/mtt/ipc0/eval.json", []),
                           ("results/synthetic-hiwl5/distill/stm/ipc01/synthetic.pt", [])):
        dry = subprocess.run([*SNAKEMAKE, "-n", target, *config], cwd=wd, capture_output=True, text=True,
                             timeout=300, env={**os.environ, "PYTHONPATH": str(wd / "src")})
        text = dry.stdout + dry.stderr
        assert dry.returncode != 0 and f"No rule to produce {target}" in text, text
    dry = subprocess.run([*SNAKEMAKE, "-n", "results/synthetic-guan9/classify/flat/metrics.json", "--config",
                          "cut=guan9"], cwd=wd, capture_output=True, text=True, timeout=300,
                         env={**os.environ, "PYTHONPATH": str(wd / "src")})
    assert dry.returncode == 0 and "train_classifier" in dry.stdout, dry.stdout + dry.stderr


def test_dry_run_and_lint_of_the_repos_workflow(tmp_path):
    """The repository's own files in a fresh folder: a developer's results/ cannot empty the plan,
    and nothing (.snakemake/) is written into the checkout."""
    wd = copy_workflow(tmp_path)
    dry = subprocess.run([*SNAKEMAKE, "-n"], cwd=wd, capture_output=True, text=True, timeout=300)
    assert dry.returncode == 0 and "simulate_galaxies" in dry.stdout + dry.stderr
    lint = subprocess.run([*SNAKEMAKE, "--lint"], cwd=wd, capture_output=True, text=True, timeout=300)
    assert lint.returncode == 0 and "Lints for" not in lint.stdout + lint.stderr, lint.stdout + lint.stderr
    # snakefmt reads its settings from the repository's pyproject.toml (and --check writes nothing)
    fmt = subprocess.run([sys.executable, "-m", "snakefmt", "--check", "Snakefile", "workflow"], cwd=REPO,
                         capture_output=True, text=True, timeout=300)
    assert fmt.returncode == 0, fmt.stdout + fmt.stderr
