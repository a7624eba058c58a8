# Helpers shared by the workflow: config checks, paths, code dependencies, targets.
from dataclasses import asdict
from pathlib import Path

from snakemake.exceptions import WorkflowError

from gzmorph.classify_settings import ClassifySettings
from gzmorph.codedeps import import_closure
from gzmorph.config_check import check_config, check_inside, dataset_name
from gzmorph.cuts import get_cut
from gzmorph.io import InputError
from gzmorph.manifest import refresh_manifest
from gzmorph.pretrained import encoder_files

REPO = Path(workflow.basedir)
# every config value (types, ranges, names, split sum, cuts, stage blocks) is checked here, before
# the first job is planned: one line per error, naming the key (gzmorph.config_check)
try:
    check_config(config, REPO / "workflow" / "schemas" / "config.schema.yaml")
except InputError as err:
    raise WorkflowError(str(err)) from None
CUT = get_cut(config["cut"], config["cuts"])

config["dataset"] = dataset_name(config)
DATASET = config["dataset"]
RESULTS = f"results/{DATASET}"
ENV = "../../envs/gzmorph.yaml"


def inside_results(path, key):
    """``path`` if it lies inside results/<dataset>/; a WorkflowError naming ``key`` otherwise."""
    try:
        return check_inside(path, RESULTS, key)
    except InputError as err:
        raise WorkflowError(str(err)) from None


def res(path):
    """An output path of this dataset: results/<dataset>/<path>."""
    return inside_results(f"{RESULTS}/{path}", f"res({path!r})")


def log_path(name):
    return inside_results(f"{RESULTS}/logs/{name}.log", f"log_path({name!r})")


def bench_path(name):
    return inside_results(f"{RESULTS}/benchmarks/{name}.tsv", f"bench_path({name!r})")


# size and mtime of every source image (gzmorph.manifest): re-stat here, at every DAG build, so
# that a replaced, restored, added or removed image reruns the rules that decode images
IMAGE_MANIFEST = res("source/images.manifest.tsv")
refresh_manifest(IMAGE_MANIFEST)


def code_of(script):
    """A rule's code inputs: its script and the library modules the script imports, directly or
    transitively (gzmorph.codedeps reads the imports; nothing is listed by hand), so that editing
    a module reruns exactly the rules whose scripts import it."""
    path = REPO / "workflow" / "scripts" / f"{script}.py"
    return [str(path), *import_closure(path, REPO / "src")]


def check_code_inputs():
    """Every rule declares the code of its own script (a rule naming another script fails here)."""
    for each in workflow.rules:
        if each.script is None:
            continue
        script = Path(each.script).stem
        declared = each.input.get("code")
        if declared is None or sorted(map(str, declared)) != sorted(code_of(script)):
            raise WorkflowError(f"{each.name}: its input 'code' must be code_of({script!r})")


def source_data_dir():
    """Where the source catalogue + images live (synthetic: simulated under results/)."""
    if config["source"] == "synthetic":
        return res("source/synthetic")
    if config["data_dir"]:
        return str(Path(config["data_dir"]).resolve())
    if config["source"] == "kaggle":
        raise WorkflowError(
            "source=kaggle needs data_dir: the folder with training_solutions_rev1 (.csv, .csv.gz, .zip or .parquet) "
            "and images_training_rev1/ (download them from the Kaggle challenge page)"
        )
    return "resources/gz2"


def source_catalogue_input(wildcards):
    """The file the source table is read from, so that a changed catalogue reruns curation."""
    d = source_data_dir()
    if config["source"] == "synthetic":
        return d
    if config["source"] == "kaggle":
        from gzmorph.sources.kaggle import find_catalogue as find_kaggle_catalogue

        try:
            return str(find_kaggle_catalogue(d))
        except InputError as err:
            raise WorkflowError(str(err))
    if config["data_dir"]:
        from gzmorph.sources.gz2 import find_catalogue

        try:
            return str(find_catalogue(Path(d), config["gz2"]["catalogue"] or None))
        except InputError as err:
            raise WorkflowError(str(err))
    return "resources/gz2/download.done"


# Each stage's .smk registers what `rule all` builds and the report sections it writes;
# both are read when the DAG is built, after every include.
TARGETS = []
REPORT_SECTIONS = []


def all_targets():
    return TARGETS + [res("report/index.html")]


def report_figures(section, category, caption, subcategory="figures"):
    """The folder of a report section's figures (one PNG each), shown in Snakemake's own report
    (``snakemake --report report.zip``) under ``category`` / ``subcategory``."""
    return report(
        directory(res(f"report/figures/{section}")),
        patterns=["{name}.png"],
        caption=caption,
        category=category,
        subcategory=subcategory,
        labels={"figure": "{name}"},
    )


def report_tables(section, category, caption, subcategory="tables"):
    """The folder of a report section's tables (one TSV each), as :func:`report_figures`."""
    return report(
        directory(res(f"report/tables/{section}")),
        patterns=["{name}.tsv"],
        caption=caption,
        category=category,
        subcategory=subcategory,
        labels={"table": "{name}"},
    )


def report_fragments(wildcards=None):
    """Section fragments of every stage this config runs (the report orders them)."""
    return list(REPORT_SECTIONS)
