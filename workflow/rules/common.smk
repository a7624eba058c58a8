# Helpers shared by the workflow: config checks, paths, code dependencies, targets.
from dataclasses import asdict
import os
from pathlib import Path
import sys

from snakemake.exceptions import WorkflowError

import gzmorph
from gzmorph.classify_settings import ClassifySettings, curated_image_size
from gzmorph.codedeps import foreign_modules, import_closure
from gzmorph.config_check import check_config, check_inside, dataset_name
from gzmorph.cuts import get_cut
from gzmorph.gpu import job_gpus
from gzmorph.io import InputError, portable_path
from gzmorph.manifest import content_digest, manifest_in_use, refresh_manifest
from gzmorph.pretrained import encoder_files
from gzmorph.represent_settings import RepresentSettings
from gzmorph.sources.plan import (
    apply_specs,
    data_errors,
    several as several_sources,
    source_inputs,
    source_specs,
)
from gzmorph.stages import stage_plan

REPO = Path(workflow.basedir)
# the rules declare src/'s modules as their code: the gzmorph that runs must be those files
_FOREIGN = foreign_modules(REPO / "src")
if _FOREIGN:
    raise WorkflowError(
        f"the gzmorph that Python imports ({Path(gzmorph.__file__).parent}) is not this "
        f"checkout's {REPO / 'src'} and differs from it in {len(_FOREIGN)} module(s) (e.g. {_FOREIGN[0]}): "
        "the rules would run other code than they track; install this checkout (scripts/setup-env.sh)"
    )
# every config value (types, ranges, names, split sum, cuts, stage blocks) is checked here, before
# the first job is planned: one line per error, naming the key (gzmorph.config_check)
try:
    check_config(config, REPO / "workflow" / "schemas" / "config.schema.yaml")
except InputError as err:
    raise WorkflowError(str(err)) from None
CUT = get_cut(config["cut"], config["cuts"])
# the side of the curated images: classify.image_size (e.g. 240 with classify.preset: paper), else
# the top-level image_size; the representation's images have their own (represent.smk)
CURATED_IMAGE_SIZE = curated_image_size(config)

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


def refresh_images(manifest):
    """Re-stat the images of ``manifest`` (gzmorph.manifest) at this DAG build, so that a replaced,
    restored, added or removed image reruns the rules that decode images. Not in a cluster job's own
    parse, nor while another Snakemake run holds the manifest (a dry run beside it): that run records
    the manifest as its jobs' input when they finish, and a rewrite under it would mark a store
    decoded from the old images as up to date. Such a run is told, and the next DAG build re-stats."""
    if not workflow.is_main_process:
        return
    if not manifest_in_use(manifest):
        refresh_manifest(manifest)
    elif refresh_manifest(manifest, write=False):
        print(
            f"gzmorph: images listed in {manifest} changed, but another Snakemake run is using it; "
            "run again when it has finished to plan their rules",
            file=sys.stderr,
        )


def data_digest(paths):
    """The SHA-256 of the data files among ``paths`` (gzmorph.manifest.content_digest, read again only
    when one's size or mtime changed): a param of the rules that read catalogues, encoders or a
    model from elsewhere, so that a file replaced by an older one (cp -p, rsync -a, an unpacked
    archive), which Snakemake's time comparison misses, reruns them."""
    return content_digest([p for p in paths if os.path.isfile(p)], res(".cache/digests.json"))


# size and mtime of every source image (gzmorph.manifest), re-stat at every DAG build
IMAGE_MANIFEST = res("source/images.manifest.tsv")
refresh_images(IMAGE_MANIFEST)


def named(**params):
    """A rule's settings as one param, ``named``, a dict: Snakemake records a job's params as the set
    of their values' reprs, without their names, so a setting turned from true to false beside
    another true and another false (or two settings that swap values) left that set, and the stale
    result, as they were. A dict's repr names every key. Wildcard lambdas stay beside it;
    ``gzmorph.smk.rule_params`` hands the scripts one flat dict."""
    return {"named": params}


def work_beside_output(wildcards, output):
    """A resumable job's work folder (its checkpoints): beside its first output, `.work` for that
    file's suffix (experts/expert_000.work, distill/baselines/full.work); the job removes it when done."""
    return str(Path(output[0]).with_suffix(".work"))


def code_of(script):
    """A rule's code inputs: its script and the library modules the script imports, directly or
    transitively (gzmorph.codedeps reads the imports; nothing is listed by hand), so that editing
    a module reruns exactly the rules whose scripts import it. Relative to the working directory,
    as every other input: a project folder moved or renamed as a whole reruns nothing."""
    path = REPO / "workflow" / "scripts" / f"{script}.py"
    return [os.path.relpath(p) for p in (path, *import_closure(path, REPO / "src"))]


def check_code_inputs():
    """Every rule declares the code of its own script (a rule naming another script fails here)."""
    for each in workflow.rules:
        if each.script is None:
            continue
        script = Path(each.script).stem
        declared = each.input.get("code")
        if declared is None or sorted(map(str, declared)) != sorted(code_of(script)):
            raise WorkflowError(f"{each.name}: its input 'code' must be code_of({script!r})")


def resolve_data_dir(spec):
    """Where a source's catalogue + images live (synthetic: simulated under results/); inside the
    project folder relative to it, so that moving the folder as a whole reruns nothing."""
    if spec["source"] == "synthetic":
        return res("source/synthetic")
    if spec["data_dir"]:
        return portable_path(spec["data_dir"])
    if spec["source"] in ("kaggle", "table"):
        raise WorkflowError(
            f"source={spec['source']} needs data_dir: the folder with its catalogue and images"
            + (
                " (training_solutions_rev1 as .csv, .csv.gz, .zip or .parquet, and images_training_rev1/; "
                "download them from the Kaggle challenge page)"
                if spec["source"] == "kaggle"
                else ""
            )
        )
    return "resources/gz2"


# every source the run reads, by name (gzmorph.sources.plan): the one source of source/data_dir/cut,
# or each entry of sources:, merged into one table with a `source` column
SEVERAL_SOURCES = several_sources(config)
SOURCES = source_specs(config)
# source=gz2 with no data_dir: rule download_gz2 fetches the Zoobot release into resources/gz2/
GZ2_DOWNLOAD = config["source"] == "gz2" and not SEVERAL_SOURCES and not config["data_dir"]
# several sources: each source's cut (empty for one source); and every cut the run selects with
SOURCE_CUTS = {n: s["cut"] for n, s in SOURCES.items()} if SEVERAL_SOURCES else {}
USED_CUTS = {config["cut"], *SOURCE_CUTS.values()}
for _spec in SOURCES.values():
    _spec["data_dir"] = resolve_data_dir(_spec)
# the other catalogues classify.apply_to names (rule apply_source_table reads each)
APPLY_SOURCES = apply_specs(ClassifySettings.from_config(config["classify"]).apply_to)
# the {name} of those rules: only the catalogues named (another target is "no rule", not a KeyError)
APPLY_NAMES = "|".join(APPLY_SOURCES) or "(?!)"
# each source's folder and catalogue, and those of classify.apply_to, found before any job is planned
# (so the input functions below find them)
_DATA_ERRORS = data_errors(
    {
        **{
            (f"sources.{n}.data_dir" if SEVERAL_SOURCES else "data_dir"): s
            for n, s in SOURCES.items()
            if not GZ2_DOWNLOAD  # nothing to find before the download
        },
        **{f"classify.apply_to.{n}.data_dir": s for n, s in APPLY_SOURCES.items()},
    }
)
if _DATA_ERRORS:
    raise WorkflowError("\n".join(_DATA_ERRORS))
# what the image rules decode FITS files with, per source (gzmorph.fits)
SOURCE_FITS = {name: spec["fits"] for name, spec in SOURCES.items()}
# whether every source has vote fractions (the representation and the anomaly search need them)
ALL_VOTES = all(spec["votes"] for spec in SOURCES.values())
ANY_VOTES = any(spec["votes"] for spec in SOURCES.values())
# which stages (and representation parts) run, and why the others do not: the config's stages and
# what the sources allow (labels, vote fractions, represent.model); the report shows it
STAGE_PLAN = stage_plan(config, SOURCES, asdict(RepresentSettings.from_config(config["represent"])))


def source_data_dir():
    """Where the (single) source's catalogue + images live."""
    return next(iter(SOURCES.values()))["data_dir"]


def source_catalogue_input(wildcards):
    """The files the source table is read from, so that a changed catalogue reruns curation."""
    out = []
    for spec in SOURCES.values():
        d = spec["data_dir"]
        if spec["source"] == "synthetic":
            out.append(d)
        elif GZ2_DOWNLOAD:
            out.append("resources/gz2/download.done")
        else:
            out += source_inputs(spec, d)
    return out


def apply_source_inputs(wildcards):
    """The files another catalogue's table is read from, so that changing one reruns it."""
    spec = APPLY_SOURCES[wildcards.name]
    if spec["source"] == "synthetic":
        return [spec["data_dir"]]
    return source_inputs(spec, spec["data_dir"])


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
