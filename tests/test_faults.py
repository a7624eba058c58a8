"""Faults (issue 15): what a user sees when a run is killed, the disk fills up, the results folder
cannot be written, two runs share a folder, an output or checkpoint is damaged, or the ``gzmorph``
command is misused.  Each case asserts the user-visible outcome (exit code, the message naming the
file, nothing that looks complete, nothing written outside the run's folder) and the recovery.

The workflow cases run the real ``snakemake`` command on a tiny Kaggle-layout data set made here
(80 galaxies, two classes, 32 px), so that nothing depends on the shared samples or the simulator.
Every run works in one folder whose state is restored from a snapshot of a finished run before each
case: Snakemake records absolute code paths, so a copy elsewhere would rerun everything.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from test_workflow import SNAKEMAKE, TINY, copy_workflow, planned_jobs

from gzmorph.imagestream import IMAGE_SUFFIXES

DS = "f"
RES = f"results/{DS}"
CURATION = [f"{RES}/curated/catalogue.parquet", f"{RES}/curated/images.parquet"]
MODEL = f"{RES}/classify/flat/model.pt"
EXPERT = f"{RES}/experts/expert_000.pt"
GZMORPH = str(Path(sys.executable).with_name("gzmorph"))
LOCKED = "Error: Directory cannot be locked."


# ----------------------------------------------------------------------------------------- data
def fake_kaggle(folder: Path, n: int = 80, seed: int = 0) -> Path:
    """``n`` galaxies in the Kaggle layout: valid vote fractions (every question a Dirichlet draw), half
    of them smooth (Class1.1 = 0.8) and half featured (Class1.2 = 0.8), and 192 px JPEGs (a round
    blob for smooth, a blob with a bar for featured, on sky noise): big enough that decoding them takes
    a moment, for a kill to land in."""
    from PIL import Image

    from gzmorph.tree import GZ2_TREE, KAGGLE_COLUMNS

    rng = np.random.default_rng(seed)
    cond = pd.DataFrame(0.0, index=range(n), columns=KAGGLE_COLUMNS)
    for q in GZ2_TREE.questions:
        cols = [a.kaggle for a in q.answers]
        cond[cols] = rng.dirichlet(np.ones(len(cols)), n)
    smooth = np.arange(n) % 2 == 0
    q1 = [a.kaggle for a in GZ2_TREE.question(1).answers]
    cond[q1] = np.where(smooth[:, None], [0.8, 0.15, 0.05], [0.15, 0.8, 0.05])
    table = GZ2_TREE.to_cumulative(cond)
    table.insert(0, "GalaxyID", 200000 + np.arange(n))
    images = folder / "images_training_rev1"
    images.mkdir(parents=True)
    size = 192
    yy, xx = np.mgrid[:size, :size] - (size - 1) / 2
    for gid, s in zip(table["GalaxyID"], smooth):
        r = rng.uniform(12, 27)
        img = 150 * np.exp(-(xx**2 + yy**2) / (2 * r**2))
        if not s:
            angle = rng.uniform(0, np.pi)
            along = xx * np.cos(angle) + yy * np.sin(angle)
            across = -xx * np.sin(angle) + yy * np.cos(angle)
            img += 90 * np.exp(-(along**2) / 2700 - across**2 / 36)
        rgb = np.clip(img[..., None] * [1.0, 0.9, 0.7] + rng.normal(20, 8, (size, size, 3)), 0, 255)
        Image.fromarray(rgb.astype(np.uint8)).save(images / f"{gid}.jpg", quality=90)
    table.to_csv(folder / "training_solutions_rev1.csv", index=False)
    return folder


def run_config(data: Path, **over) -> dict:
    """Every stage at toy scale; trainings long enough (in epochs) for a kill to land mid-training."""
    cfg = {"source": "kaggle", "data_dir": str(data), "dataset": DS, "cut": "two",
           "cuts": {"two": {"classes": {"smooth": ["Class1.1 > 0.5"], "featured": ["Class1.2 > 0.5"]}}},
           "image_size": 32,
           "classify": {"models": ["flat"], "epochs": 4, "patience": 0},
           "distill": {**TINY["distill"], "expert": {"epochs": 4}},
           "represent": TINY["represent"]}
    return {**cfg, **over}


# ------------------------------------------------------------------------------- the run folder
def snakemake_command(wd: Path, args, config: dict) -> tuple[list[str], dict]:
    """The real snakemake command and its environment.  PYTHONPATH puts the folder's own copy of the
    library first, so that its jobs run the code the rules declare (and a checkpoint's code version
    stays that of the run, whatever is edited in the repository meanwhile)."""
    (wd / "test-config.yaml").write_text(yaml.safe_dump(config))
    cmd = [*SNAKEMAKE, "--cores", "2", *args, "--configfile", "config.yaml", "test-config.yaml"]
    path = os.pathsep.join(p for p in (str(wd / "src"), os.environ.get("PYTHONPATH", "")) if p)
    return cmd, {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": path}


def snakemake(wd: Path, *args, config: dict, timeout: float = 600) -> subprocess.CompletedProcess:
    cmd, env = snakemake_command(wd, args, config)
    return subprocess.run(cmd, check=False, cwd=wd, capture_output=True, text=True, env=env, timeout=timeout)


class Run:
    """One workflow folder (always at the same path) and the snapshot of its finished run."""

    def __init__(self, root: Path, data: Path):
        self.root, self.data = root, data
        self.wd, self.snap = root / "wf", root / "snapshot"
        self.config = run_config(data)

    def restore(self) -> Path:
        if self.wd.exists():
            shutil.rmtree(self.wd)
        shutil.copytree(self.snap, self.wd, symlinks=True)
        return self.wd

    def smk(self, *args, config=None, timeout: float = 600):
        return snakemake(self.wd, *args, config=config or self.config, timeout=timeout)

    def start(self, console: Path, *args, config=None) -> subprocess.Popen:
        """The real snakemake command in the background, in its own process group."""
        cmd, env = snakemake_command(self.wd, args, config or self.config)
        with open(console, "w") as out:
            return subprocess.Popen(cmd, cwd=self.wd, stdout=out, stderr=subprocess.STDOUT, env=env,
                                    start_new_session=True)

    def outside(self) -> dict:
        """What lies outside the run folder that a run could touch: the data and the folder's neighbours."""
        data = {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in self.data.rglob("*")}
        return {"data": data, "beside": sorted(p.name for p in self.root.iterdir())}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """The finished reference run: curation, the flat classifier and one expert, uninterrupted; its
    snapshot kept beside it."""
    root = tmp_path_factory.mktemp("faults")
    data = fake_kaggle(tmp_path_factory.mktemp("data") / "kaggle")
    r = Run(root, data)
    copy_workflow(r.wd)
    out = r.smk(*CURATION, MODEL, EXPERT)
    assert out.returncode == 0, text(out)[-3000:]
    shutil.copytree(r.wd, r.snap, symlinks=True)
    return r


@pytest.fixture
def fresh(run):
    """The run folder as the reference run left it; afterwards, nothing outside it has changed."""
    run.restore()
    before = run.outside()
    yield run
    assert run.outside() == before


def text(out) -> str:
    return out.stdout + out.stderr


def gzmorph_lines(s: str) -> list[str]:
    return [ln for ln in s.splitlines() if ln.startswith("gzmorph")]


def processes_in_group(pgid: int) -> list[int]:
    """Live (not zombie) processes of process group ``pgid``."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) == pgid and fields[0] not in "ZX":
                out.append(int(stat.parent.name))
    return out


def kill_when(proc: subprocess.Popen, path: Path, console: Path, timeout: float = 300) -> None:
    """SIGKILL the whole snakemake process group as soon as ``path`` exists."""
    t0 = time.monotonic()
    while not path.exists():
        if proc.poll() is not None:
            pytest.fail(f"snakemake ended ({proc.returncode}) before {path} appeared:\n{console.read_text()[-3000:]}")
        if time.monotonic() - t0 > timeout:
            os.killpg(proc.pid, signal.SIGKILL)
            pytest.fail(f"{path} did not appear in {timeout} s")
        time.sleep(0.001)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 10
    while processes_in_group(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert processes_in_group(proc.pid) == [], "a job of the killed run is still running"


def temporaries(folder: Path) -> list[str]:
    from gzmorph.io import is_temporary

    return [str(p) for p in folder.rglob("*") if is_temporary(p)]


def same_images(a: Path, b: Path) -> None:
    from gzmorph.imageset import read_images

    ids_a, img_a = read_images(a)
    ids_b, img_b = read_images(b)
    assert np.array_equal(ids_a, ids_b) and np.array_equal(img_a, img_b)


def weights(path: Path) -> dict:
    """The trained numbers of a classifier or expert file (what must not depend on a kill)."""
    if "experts" in path.parts:
        from gzmorph.experts import load_expert

        return {"trajectory": load_expert(path)["trajectory"]}
    from gzmorph.classify import load_model

    return {f"{level}/{k}": v for level, m in load_model(path, device="cpu").models.items()
            for k, v in m.state_dict().items()}


def same_weights(a: Path, b: Path) -> bool:
    import torch

    wa, wb = weights(a), weights(b)
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


# --------------------------------------------------------------------- 1. kill -9, then a rerun
@pytest.mark.e2e
def test_kill_during_preprocessing_then_unlock_and_rerun_incomplete(fresh, tmp_path):
    """A kill leaves Snakemake's lock: the next run stops with the lock message (and runs nothing);
    after --unlock, an output that landed before the kill (the job had two) is refused as incomplete,
    naming it; --rerun-incomplete rebuilds it, equal to the uninterrupted run's."""
    wd, curated = fresh.wd, fresh.wd / RES / "curated"
    log = wd / RES / "logs" / "preprocess_images.log"
    console = tmp_path / "killed.txt"
    for _ in range(3):  # the job runs a fraction of a second: should it win the race, kill it again
        log.unlink()
        proc = fresh.start(console, *CURATION, "--forcerun", "preprocess_images")
        kill_when(proc, log, console)
        if not (curated / "images.parquet").exists():
            break
        fresh.restore()
    assert not (curated / "images.parquet").exists() and not (curated / "image_qc.json").exists()

    out = fresh.smk(*CURATION)
    assert out.returncode == 1 and LOCKED in text(out), text(out)[-3000:]
    assert ("the remaining lock was likely caused by a kill signal or a power loss. It can be removed with the "
            "--unlock argument.") in text(out)
    assert "Execute" not in text(out) and not (curated / "images.parquet").exists()
    out = fresh.smk("--unlock", *CURATION)
    assert out.returncode == 0 and "Unlocked working directory" in text(out)

    # the kill came between the job's two atomic writes: its first output is in place
    shutil.copy2(fresh.snap / RES / "curated" / "images.parquet", curated / "images.parquet")
    out = fresh.smk(*CURATION)
    assert out.returncode == 1 and "IncompleteFilesException" in text(out), text(out)[-3000:]
    assert "To re-generate the files rerun your command with the --rerun-incomplete flag." in text(out)
    assert re.search(rf"^Incomplete files:\n{RES}/curated/images.parquet$", text(out), re.MULTILINE), text(out)[-3000:]
    assert "Execute" not in text(out)

    out = fresh.smk(*CURATION, "--rerun-incomplete")
    assert out.returncode == 0, text(out)[-3000:]
    same_images(curated / "images.parquet", fresh.snap / RES / "curated" / "images.parquet")
    pd.testing.assert_frame_equal(pd.read_parquet(curated / "catalogue.parquet"),
                                  pd.read_parquet(fresh.snap / RES / "curated" / "catalogue.parquet"))
    assert temporaries(wd / RES) == []


TRAININGS = {  # rule: (target, its checkpoint written after every epoch)
    "train_classifier": (MODEL, f"{RES}/classify/flat/checkpoints/flat/last.pt"),
    "train_expert": (EXPERT, f"{RES}/experts/expert_000.work/last.pt"),
}


@pytest.mark.e2e
@pytest.mark.parametrize("rule, truncate", [("train_classifier", False), ("train_expert", True)])
def test_kill_during_training_then_the_rerun_ends_with_the_same_weights(fresh, tmp_path, rule, truncate):
    """Killed after its first epoch's checkpoint: no model file.  Unlocked, the rerun resumes from the
    checkpoint (the log says so); a checkpoint truncated meanwhile (the expert's) is set aside with one
    log line and training starts afresh.  Either way the weights are the uninterrupted run's."""
    target, checkpoint = TRAININGS[rule]
    wd = fresh.wd
    console = tmp_path / "killed.txt"
    for _ in range(3):  # a few epochs follow the first checkpoint: should the job finish first, kill it again
        proc = fresh.start(console, target, "--forcerun", rule)
        kill_when(proc, wd / checkpoint, console)
        if not (wd / target).exists():
            break
        fresh.restore()
    assert not (wd / target).exists(), f"{rule} finished before each of 3 kills landed"
    assert (wd / checkpoint).exists()
    if truncate:
        os.truncate(wd / checkpoint, (wd / checkpoint).stat().st_size // 2)

    # what --unlock does (shown in the preprocessing case), without another start of Snakemake
    locks = list((wd / ".snakemake" / "locks").iterdir())
    assert locks
    for lock in locks:
        lock.unlink()
    out = fresh.smk(target)
    assert out.returncode == 0, text(out)[-3000:]
    assert planned_jobs(out) == {rule: 1}
    logs = "".join(p.read_text() for p in (wd / RES / "logs").glob(f"{rule}*.log"))
    if truncate:
        assert re.search(r"unreadable checkpoint.*; training from scratch", logs), logs[-2000:]
        assert "resumed from" not in logs
    else:
        assert re.search(rf"resumed from \S*{re.escape(checkpoint)} after epoch \d", logs), logs[-2000:]
    assert same_weights(wd / target, fresh.snap / target)
    assert not (wd / checkpoint).exists() and temporaries(wd / RES) == []


# ------------------------------------------------------------------------------- 2. a full disk
@contextlib.contextmanager
def small_disk(folder: Path, size: str):
    """A tmpfs of ``size`` mounted on ``folder`` (root only); unmounted afterwards."""
    if os.geteuid() != 0:
        pytest.skip("a full disk is simulated with a small tmpfs, and mounting one needs root")
    folder.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                             check=False, capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield folder
    finally:
        if subprocess.run(["umount", str(folder)], check=False, capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(folder)], check=False, capture_output=True)


@pytest.mark.e2e
def test_full_disk_fails_the_rule_leaves_nothing_complete_looking_and_a_rerun_finishes(run, tmp_path):
    """Results on a 256 kB disk: the source table and selection fit, the image table does not.  The
    rule fails with the disk's error, its temporary file is gone, every Parquet file left reads as
    complete; with space again, the rerun does only what failed and gives the reference images."""
    import pyarrow.parquet as pq

    wd = copy_workflow(tmp_path / "wf")
    results = wd / "results"
    before = run.outside()
    with small_disk(results, "256k"):
        out = snakemake(wd, *CURATION, config=run.config)
        assert out.returncode == 1, text(out)[-3000:]
        assert "Error in rule preprocess_images" in text(out)
        assert re.search(r"OSError: \[Errno 28\] .*No space left on device", text(out)), text(out)[-3000:]
        curated = results / DS / "curated"
        assert not (curated / "images.parquet").exists() and not (curated / "image_qc.json").exists()
        assert not (curated / "catalogue.parquet").exists() and temporaries(results) == []
        left = sorted(results.rglob("*.parquet"))
        assert [p.name for p in left] == ["selection.parquet", "catalogue.parquet"]
        for p in left:
            assert pq.read_metadata(p).num_rows > 0
        # space again (the same disk, grown): only the failed job and what follows it run
        subprocess.run(["mount", "-o", "remount,size=16m", str(results)], check=True)
        out = snakemake(wd, *CURATION, config=run.config)
        assert out.returncode == 0, text(out)[-3000:]
        assert planned_jobs(out) == {"preprocess_images": 1, "split": 1}
        same_images(curated / "images.parquet", run.snap / RES / "curated" / "images.parquet")
    assert run.outside() == before


# ---------------------------------------------------------------------- 3. a read-only results folder
def writable(folder: Path) -> bool:
    probe = folder / ".probe"
    try:
        probe.write_text("x")
    except OSError:
        return False
    probe.unlink()
    return True


@contextlib.contextmanager
def read_only(folder: Path):
    """``folder`` made unwritable: chmod 0o555, or for root (whom permission bits do not stop) the
    immutable attribute, or a read-only bind mount; a skip naming why when none works."""
    mode = folder.stat().st_mode & 0o7777
    folder.chmod(0o555)
    try:
        if not writable(folder):
            yield "chmod 0555"
            return
    finally:
        folder.chmod(mode)
    chattr = shutil.which("chattr") and subprocess.run(["chattr", "+i", str(folder)], check=False, capture_output=True)
    if chattr and chattr.returncode == 0:
        try:
            if not writable(folder):
                yield "chattr +i"
                return
        finally:
            subprocess.run(["chattr", "-i", str(folder)], check=False, capture_output=True)
    bind = subprocess.run(["mount", "--bind", str(folder), str(folder)], check=False, capture_output=True, text=True)
    if bind.returncode == 0:
        try:
            remount = subprocess.run(["mount", "-o", "remount,bind,ro", str(folder)], check=False, capture_output=True)
            if remount.returncode == 0 and not writable(folder):
                yield "read-only bind mount"
                return
        finally:
            subprocess.run(["umount", str(folder)], check=False, capture_output=True)
    pytest.skip(f"cannot make {folder} read-only here: root ignores chmod, and neither chattr +i nor a "
                f"read-only bind mount worked ({bind.stderr.strip()})")


def listing(folder: Path) -> dict:
    return {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in sorted(folder.iterdir())}


@pytest.mark.e2e
def test_read_only_results_folder_is_one_clear_error_and_nothing_half_written(fresh):
    """A parameter change must rewrite curated/: Snakemake cannot remove the old image table and stops,
    naming it; nothing in the folder changed.  Writable again, the same command rebuilds it."""
    curated = fresh.wd / RES / "curated"
    at_48px = run_config(fresh.data, image_size=48)
    before = listing(curated)
    with read_only(curated):
        out = fresh.smk(*CURATION, config=at_48px)
        assert listing(curated) == before
    assert out.returncode == 1, text(out)[-3000:]
    last = text(out).strip().splitlines()[-1]
    assert re.fullmatch(r"PermissionError: \[Errno (1|13)\] (Operation not permitted|Permission denied): "
                        rf"'{RES}/curated/images.parquet'", last), text(out)[-3000:]
    assert temporaries(fresh.wd / RES) == []

    out = fresh.smk(*CURATION, config=at_48px)
    assert out.returncode == 0 and planned_jobs(out) == {"preprocess_images": 1, "split": 1}, text(out)[-3000:]
    from gzmorph.imageset import image_shape

    assert image_shape(curated / "images.parquet") == (48, 48, 3)


# ---------------------------------------------------------------- 4. two runs in the same folder
@pytest.mark.e2e
def test_a_second_run_in_the_same_folder_fails_fast_and_the_first_completes(fresh, tmp_path):
    """While a run works (paused once its job has started, so that it surely holds the folder), the same
    command in the same folder stops at once with Snakemake's lock message and runs no job; the first
    then completes with the outputs it would have had alone, and leaves no lock behind."""
    wd, curated = fresh.wd, fresh.wd / RES / "curated"
    log = wd / RES / "logs" / "preprocess_images.log"
    log.unlink()
    console = tmp_path / "first.txt"
    first = fresh.start(console, *CURATION, "--forcerun", "preprocess_images")
    try:
        while not log.exists():
            assert first.poll() is None, console.read_text()[-3000:]
            time.sleep(0.005)
        os.killpg(first.pid, signal.SIGSTOP)
        t0 = time.monotonic()
        second = fresh.smk(*CURATION, timeout=120)  # waiting for the lock would hang: the first is paused
        took = time.monotonic() - t0
    finally:
        os.killpg(first.pid, signal.SIGCONT)
    assert second.returncode == 1, text(second)[-3000:]
    assert LOCKED in text(second) and "no other Snakemake process is trying to create the same files" in text(second)
    assert "Execute" not in text(second) and took < 60
    assert first.wait(timeout=600) == 0, console.read_text()[-3000:]
    same_images(curated / "images.parquet", fresh.snap / RES / "curated" / "images.parquet")
    pd.testing.assert_frame_equal(pd.read_parquet(wd / CURATION[0]), pd.read_parquet(fresh.snap / CURATION[0]))
    assert not list((wd / ".snakemake" / "locks").glob("*"))


# ------------------------------------------------------------ 5. damaged outputs and checkpoints
@pytest.mark.e2e
def test_truncated_image_table_is_trusted_by_snakemake_and_named_by_its_reader(fresh):
    """Snakemake judges outputs by their times, not their content: after the image table is truncated
    the next run does not rebuild it, only reruns what is older than it (the classifier).  That rule
    fails with one line naming the file and the way out; following it (delete, rerun) rebuilds the
    same table."""
    images = fresh.wd / RES / "curated" / "images.parquet"
    os.truncate(images, images.stat().st_size // 2)
    out = fresh.smk(MODEL)
    assert out.returncode == 1 and planned_jobs(out) == {"train_classifier": 1}, text(out)[-3000:]
    assert gzmorph_lines(text(out)) == [
        f"gzmorph: rule train_classifier: {RES}/curated/images.parquet: not a readable image table (Parquet magic "
        + "bytes not found in footer. Either the file is corrupted or this is not a parquet file.); it is damaged "
        + "or truncated: delete it and rerun snakemake to rebuild it"]
    assert not (fresh.wd / MODEL).exists() and "Traceback" not in text(out)

    images.unlink()
    out = fresh.smk(*CURATION)
    assert out.returncode == 0 and planned_jobs(out) == {"preprocess_images": 1, "split": 1}, text(out)[-3000:]
    same_images(images, fresh.snap / RES / "curated" / "images.parquet")
    pd.testing.assert_frame_equal(pd.read_parquet(fresh.wd / CURATION[0]), pd.read_parquet(fresh.snap / CURATION[0]))


@pytest.mark.e2e
def test_truncated_model_is_one_line_naming_it_in_the_rule_and_the_command(fresh, tmp_path, capsys):
    """A truncated model.pt: the evaluation rule and the ``gzmorph classify`` command each say, in one
    line, which file cannot be read and how to rebuild it (the retraining the kill case above shows to
    be exact); neither writes an output."""
    model = fresh.wd / MODEL
    os.truncate(model, model.stat().st_size // 2)
    metrics = f"{RES}/classify/flat/metrics.json"
    out = fresh.smk(metrics)
    assert out.returncode == 1, text(out)[-3000:]
    [line] = gzmorph_lines(text(out))
    assert line.startswith(f"gzmorph: rule evaluate_classifier: {MODEL}: classifier model file cannot be read")
    assert line.endswith("give a classifier model file written by this gzmorph (in the workflow: snakemake "
                         "--forcerun train_classifier)") and "Traceback" not in text(out)
    assert not (fresh.wd / metrics).exists()

    from gzmorph.cli import main

    dest = tmp_path / "pred.parquet"
    assert main(["classify", str(model), str(fresh.data / "images_training_rev1"), "-o", str(dest)]) == 2
    cli = capsys.readouterr()
    assert cli.out == "" and not dest.exists()
    assert cli.err.splitlines() == [line.replace("gzmorph: rule evaluate_classifier: ", "gzmorph classify: error: ")
                                    .replace(MODEL, str(model))]


# ------------------------------------------------------------------ 6. misuse of the gzmorph command
def gzmorph(*args, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([GZMORPH, *map(str, args)], check=False, capture_output=True, text=True, cwd=cwd,
                          timeout=120)


def test_gzmorph_help_and_version():
    from gzmorph import __version__

    out = gzmorph("--help")
    assert out.returncode == 0 and out.stdout.startswith("usage: gzmorph") and "classify" in out.stdout
    out = gzmorph("--version")
    assert out.returncode == 0 and out.stdout == f"gzmorph {__version__}\n"
    out = gzmorph("classify", "--help")
    assert out.returncode == 0 and "-o OUTPUT" in out.stdout
    assert "predictions Parquet file to write (its folder must exist)" in " ".join(out.stdout.split())


SUFFIXES = ", ".join(IMAGE_SUFFIXES)  # the formats a folder is searched for
USAGE_ERRORS = {  # arguments -> the one error line argparse prints under the usage
    "no arguments": ([], "gzmorph: error: the following arguments are required: command"),
    "unknown subcommand": (
        ["frobnicate"],
        "gzmorph: error: argument command: invalid choice: 'frobnicate' (choose from 'classify', 'predict', "
        "'embed', 'finetune', 'export-encoder')"),
    "unknown option": (
        ["classify", "m.pt", "img", "-o", "p.parquet", "--frobnicate"],
        "gzmorph: error: unrecognized arguments: --frobnicate"),
    "classify without arguments": (
        ["classify"],
        "gzmorph classify: error: the following arguments are required: model, images, -o/--output"),
    "output in a missing folder": (
        ["classify", "m.pt", "img", "-o", "nowhere/p.parquet"],
        "gzmorph classify: error: argument -o/--output: nowhere: no such folder for the output file"),
    "output is a folder": (
        ["classify", "m.pt", "img", "-o", "img"],
        "gzmorph classify: error: argument -o/--output: img is a folder: give a file name, "
        + "e.g. img/predictions.parquet"),
    "output under a file": (
        ["classify", "m.pt", "img", "-o", "m.pt/p.parquet"],
        "gzmorph classify: error: argument -o/--output: m.pt is not a folder"),
    "batch size 0": (
        ["classify", "m.pt", "img", "-o", "p.parquet", "--batch-size", "0"],
        "gzmorph classify: error: argument --batch-size: '0' is not a whole number >= 1"),
    "crop fraction above 1": (
        ["classify", "m.pt", "img", "-o", "p.parquet", "--crop-fraction", "1.5"],
        "gzmorph classify: error: argument --crop-fraction: '1.5' is not a fraction in (0, 1]"),
}


@pytest.mark.parametrize("case", list(USAGE_ERRORS))
def test_gzmorph_usage_error_is_exit_2_and_one_line_before_anything_is_read(tmp_path, case):
    args, message = USAGE_ERRORS[case]
    (tmp_path / "img").mkdir()
    (tmp_path / "m.pt").write_bytes(b"not read")
    out = gzmorph(*args, cwd=tmp_path)
    assert out.returncode == 2 and out.stdout == "", out.stderr
    lines = out.stderr.splitlines()
    assert lines[0].startswith("usage: gzmorph") and lines[-1] == message, out.stderr
    assert [ln for ln in lines if "error" in ln] == [message] and "Traceback" not in out.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["img", "m.pt"]


@pytest.fixture(scope="module")
def cli_files(tmp_path_factory) -> tuple[Path, Path]:
    """A tiny flat classifier trained here (no Snakemake) and a folder of three JPEGs."""
    from PIL import Image
    from test_classify import TINY as TINY_TRAINING
    from test_classify import blob_images, write_curated

    from gzmorph.classify import train

    d = tmp_path_factory.mktemp("cli")
    catalogue, images = write_curated(d / "curated", classes=["smooth", "featured"], cut="two")
    train(catalogue, images, d / "model.pt", kind="flat", **TINY_TRAINING)
    folder = d / "jpegs"
    folder.mkdir()
    for i, img in enumerate(blob_images([0, 1, 0], size=32, seed=5)):
        Image.fromarray(img).save(folder / f"{200000 + i}.jpg")
    return d / "model.pt", folder


def input_errors(tmp_path, model: Path, images: Path) -> dict:
    (tmp_path / "empty").mkdir()
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "readme.txt").write_text("no images here")
    (tmp_path / "empty.pt").write_bytes(b"")
    out = str(tmp_path / "p.parquet")
    retrain = ("give a classifier model file written by this gzmorph (in the workflow: snakemake --forcerun "
               "train_classifier)")
    return {  # arguments -> the one line after "gzmorph classify: error: "
        "missing model": (
            ["classify", tmp_path / "missing.pt", images, "-o", out],
            f"{tmp_path / 'missing.pt'}: classifier model file not found: the file does not exist"),
        "empty model file": (
            ["classify", tmp_path / "empty.pt", images, "-o", out],
            f"{tmp_path / 'empty.pt'}: classifier model file cannot be read: the file is empty; {retrain}"),
        "an image given as the model": (
            ["classify", images / "200000.jpg", images, "-o", out],
            f"{images / '200000.jpg'}: classifier model file cannot be read: not a safetensors file; {retrain}"),
        "folder without images": (
            ["classify", model, tmp_path / "notes", "-o", out],
            f"{tmp_path / 'notes'}: folder has no images ({SUFFIXES})"),
        "empty folder": (
            ["classify", model, tmp_path / "empty", "-o", out],
            f"{tmp_path / 'empty'}: folder has no images ({SUFFIXES})"),
        "missing image": (
            ["classify", model, tmp_path / "nope.jpg", "-o", out],
            f"{tmp_path / 'nope.jpg'}: no such image file or folder"),
        "a device that does not exist": (
            ["classify", model, images, "-o", out, "--device", "banana"],
            "--device banana: not a device (auto, cpu, cuda, cuda:1 ...)"),
    }


INPUT_CASES = ["missing model", "empty model file", "an image given as the model", "folder without images",
               "empty folder", "missing image", "a device that does not exist"]


@pytest.mark.parametrize("case", INPUT_CASES)
def test_gzmorph_input_error_is_exit_2_and_one_line_naming_it(tmp_path, cli_files, case, capsys):
    """In this process (torch is imported once): the console script exits with what main returns."""
    from gzmorph.cli import main

    args, message = input_errors(tmp_path, *cli_files)[case]
    assert main([str(a) for a in args]) == 2
    out = capsys.readouterr()
    assert (out.out, out.err) == ("", f"gzmorph classify: error: {message}\n")
    assert not [p for p in tmp_path.iterdir() if "p.parquet" in p.name]


def test_gzmorph_unwritable_output_is_exit_1_and_one_line_naming_it(cli_files, capsys):
    """The system refuses the write (here /proc, where no file can be created): one line naming the
    output (not its temporary file), exit 1."""
    from gzmorph.cli import main

    model, images = cli_files
    assert main(["classify", str(model), str(images / "200000.jpg"), "-o", "/proc/p.parquet"]) == 1
    out = capsys.readouterr()
    assert (out.out, out.err) == ("", "gzmorph classify: error: /proc/p.parquet: No such file or directory\n")
