"""The workflow through a real single-node Slurm cluster (tests/cluster/start-slurm.sh).

Needs root on Debian/Ubuntu (it installs Slurm, munge, slurmdbd and MariaDB from the distribution
when missing) and snakemake-executor-plugin-slurm; skipped, with the reason, otherwise.  The
cluster is started once for this module and stopped at the end.

To save wall time the runs happen in two parallel phases (module fixture ``runs``):
  1. the tiny workflow (+ two gpu_probe jobs) through --profile profiles/slurm, and, beside it,
     tests/cluster/timeout.smk whose `slow` job outlives its 1-minute time limit;
  2. `<one target> --forcerun <its rule>` in the first folder, and the rerun of the timed-out one.
Each test then checks one thing in sacct / the snakemake output.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from test_workflow import TINY, copy_workflow, planned_jobs
from workdirs import own_library

REPO = Path(__file__).resolve().parents[1]
CLUSTER = REPO / "tests" / "cluster"
SLURM_DIR = Path(os.environ.get("GZMORPH_SLURM_DIR", "/tmp/gzmorph-slurm"))
PROFILES = ["--profile", str(REPO / "profiles" / "slurm"), "--profile", str(CLUSTER / "profile")]
SACCT_FIELDS = "JobID,JobName,Comment,State,AllocTRES,Elapsed,WorkDir"
SINCE = "GZMORPH_TEST_SLURM_SINCE"  # the cluster fixture's start time, in its env (sacct -S)
# Every Slurm job costs ~10-20 s here (two snakemake start-ups and status polling), so the suite
# runs the tiny workflow --until these rules: all of curation, a multi-instance GPU rule
# (train_expert, one job per expert), both training rules and the two gpu_probe jobs; the local
# end-to-end tests (test_workflow.py) run the whole DAG. GZMORPH_CLUSTER_FULL=1 runs the whole tiny
# workflow through Slurm (31 jobs + 2 probes, ~9 min here).
UNTIL = ("report_curation", "train_expert", "train_classifier", "train_representation", "gpu_probe")
FULL = os.environ.get("GZMORPH_CLUSTER_FULL", "0") not in ("", "0")

pytestmark = [pytest.mark.cluster, pytest.mark.e2e]


def _skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "needs root (installs and runs Slurm)"
    if not (shutil.which("apt-get") and shutil.which("dpkg")):
        return "needs a Debian/Ubuntu system (apt-get, dpkg) to install Slurm"
    if importlib.util.find_spec("snakemake_executor_plugin_slurm") is None:
        return "snakemake-executor-plugin-slurm not installed (pip install -e '.[slurm]')"
    return None


@pytest.fixture(scope="module")
def cluster():
    reason = _skip_reason()
    if reason:
        pytest.skip(f"local Slurm cluster: {reason}")
    env = {**os.environ, "GZMORPH_SLURM_DIR": str(SLURM_DIR)}
    t0 = time.monotonic()
    # the cluster's accounting outlives it (in SLURM_DIR), and a later session's tmp_path can be an
    # earlier one's: sacct reads only the jobs of this session
    env[SINCE] = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(time.time() - 1))
    start = subprocess.run([str(CLUSTER / "start-slurm.sh")], env=env, capture_output=True, text=True,
                           timeout=900)
    if start.returncode != 0:
        subprocess.run([str(CLUSTER / "stop-slurm.sh")], env=env, capture_output=True, timeout=120)
        tail = "\n".join((start.stdout + start.stderr).splitlines()[-25:])
        pytest.skip(f"could not start the local Slurm cluster (tests/cluster/start-slurm.sh):\n{tail}")
    print(f"\nSlurm cluster up in {time.monotonic() - t0:.1f} s: {start.stderr.strip().splitlines()[-1]}")
    env["SLURM_CONF"] = str(SLURM_DIR / "etc" / "slurm.conf")
    try:
        yield env
    finally:
        stop = subprocess.run([str(CLUSTER / "stop-slurm.sh")], env=env, capture_output=True, text=True,
                              timeout=300)
        print(stop.stderr)


def smk_slurm(workdir: Path, env: dict, *args: str) -> subprocess.Popen:
    """Start `snakemake <args>` with the slurm profile + test overlay (output in workdir/run-N.log)."""
    n = len(list(workdir.glob("run-*.log")))
    log = workdir / f"run-{n}.log"
    cmd = [sys.executable, "-m", "snakemake", *args, *PROFILES]
    fh = open(log, "w")
    proc = subprocess.Popen(cmd, cwd=workdir, env=own_library({**env, "PYTHONUNBUFFERED": "1"}, workdir), stdout=fh,
                            stderr=subprocess.STDOUT, text=True)
    proc.log, proc.cmd, proc.fh = log, cmd, fh
    return proc


def finish(proc: subprocess.Popen, timeout: float = 600) -> tuple[int, str]:
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.terminate()  # snakemake cancels its Slurm jobs on SIGTERM
        proc.wait(timeout=60)
    proc.fh.close()
    return proc.returncode, proc.log.read_text()


def sacct(env: dict, workdir: Path) -> list[dict]:
    """Every Slurm job (allocation, not steps) submitted from workdir since the cluster fixture
    started, oldest first."""
    out = subprocess.run(["sacct", "-a", "-X", "-P", "-n", "-S", env[SINCE], "-o", SACCT_FIELDS],
                         env=env, capture_output=True, text=True, timeout=60, check=True)
    names = SACCT_FIELDS.split(",")
    rows = [dict(zip(names, line.split("|"))) for line in out.stdout.splitlines() if line.strip()]
    rows = [r for r in rows if r["WorkDir"] == str(workdir)]
    for r in rows:  # the plugin's comment: rule_<rule>[_wildcards_<values>]
        m = re.fullmatch(r"rule_(\w+?)(?:_wildcards_.*)?", r["Comment"])
        r["rule"] = m.group(1) if m else r["Comment"]
    return sorted(rows, key=lambda r: int(r["JobID"]))


def table(rows: list[dict]) -> str:
    cols = ["JobID", "rule", "State", "AllocTRES", "Elapsed"]
    width = {c: max(len(c), *(len(r[c]) for r in rows)) for c in cols} if rows else {c: len(c) for c in cols}
    lines = ["  ".join(c.ljust(width[c]) for c in cols)]
    lines += ["  ".join(r[c].ljust(width[c]) for c in cols) for r in rows]
    return "\n".join(lines)


def planned_gpu_rules(dry_run_output: str) -> set[str]:
    """Rules whose jobs ask for a GPU, from a dry run's job blocks (`resources: ..., gpu=1`)."""
    gpu_rules = set()
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", dry_run_output):
        m = re.match(r"(?:local)?rule (\w+):", block)
        res = re.search(r"^\s+resources: (.*)$", block, re.M)
        if m and res and re.search(r"\bgpu=[1-9]", res.group(1)):
            gpu_rules.add(m.group(1))
    return gpu_rules


@pytest.fixture(scope="module")
def runs(cluster, tmp_path_factory):
    env = cluster
    t0 = time.monotonic()
    wd = copy_workflow(tmp_path_factory.mktemp("slurm-tiny"))
    shutil.copy(CLUSTER / "gpu_probe.py", wd / "workflow" / "gpu_probe.py")
    shutil.copy(CLUSTER / "gpu_probe.smk", wd / "workflow" / "gpu_probe.smk")
    with open(wd / "Snakefile", "a") as f:
        f.write('\n\ninclude: "workflow/gpu_probe.smk"\n')
    # the representation on `device: cpu`, as on a cluster without GPUs: its jobs ask for none
    (wd / "test-config.yaml").write_text(yaml.safe_dump({**TINY, "represent": {**TINY.get("represent", {}),
                                                                               "device": "cpu"}}))
    targets = ["all", "gpu_probes", "--configfile", "config.yaml", "test-config.yaml"]
    if not FULL:
        listed = subprocess.run([sys.executable, "-m", "snakemake", "--list-rules"], cwd=wd, env=own_library(env, wd),
                                capture_output=True, text=True, timeout=300)
        rules = set(listed.stdout.split())
        targets += ["--until", *(r for r in UNTIL if r in rules)]
    dry = subprocess.run([sys.executable, "-m", "snakemake", "-n", *targets, *PROFILES], cwd=wd,
                         env=own_library(env, wd),
                         capture_output=True, text=True, timeout=300)
    assert dry.returncode == 0, dry.stderr[-3000:]
    planned = {r: n for r, n in planned_jobs(dry).items() if r not in ("all", "gpu_probes")}

    to = tmp_path_factory.mktemp("slurm-timeout")
    shutil.copy(CLUSTER / "timeout.smk", to / "Snakefile")

    # phase 1: the workflow and, beside it, the job that outlives its time limit
    main = smk_slurm(wd, env, *targets)
    killed = smk_slurm(to, env)
    main_rc, main_out = finish(main, timeout=2400 if FULL else 600)
    t_main = time.monotonic() - t0
    killed_rc, killed_out = finish(killed)
    main_rows, killed_rows = sacct(env, wd), sacct(env, to)

    # phase 2: force one job of the finished workflow; rerun the killed one with a short sleep
    force_target = f"results/{'synthetic-hiwl5'}/curated/stats.json"
    forced = smk_slurm(wd, env, force_target, "--configfile", "config.yaml", "test-config.yaml",
                       "--forcerun", "split")
    rerun = smk_slurm(to, env, "--config", "sleep=1")
    forced_rc, forced_out = finish(forced)
    rerun_rc, rerun_out = finish(rerun)
    result = dict(
        wd=wd, to=to, dry=dry.stdout + dry.stderr, planned=planned,
        gpu_rules=planned_gpu_rules(dry.stdout + dry.stderr),
        main_rc=main_rc, main_out=main_out, main_rows=main_rows, t_main=t_main,
        killed_rc=killed_rc, killed_out=killed_out, killed_rows=killed_rows,
        forced_rc=forced_rc, forced_out=forced_out, forced_rows=sacct(env, wd)[len(main_rows):],
        rerun_rc=rerun_rc, rerun_out=rerun_out, rerun_rows=sacct(env, to)[len(killed_rows):],
    )
    scope = "whole" if FULL else "--until " + " ".join(targets[targets.index("--until") + 1:])
    print(f"\ntiny workflow ({scope}) through Slurm: {t_main:.0f} s; all cluster runs: {time.monotonic() - t0:.0f} s")
    print(f"sacct of the tiny workflow run ({wd}):\n{table(main_rows)}")
    print(f"sacct of the time-limit run, then its rerun:\n{table(killed_rows + result['rerun_rows'])}")
    return result


def test_every_rule_instance_ran_as_its_own_completed_slurm_job(runs):
    assert runs["main_rc"] == 0, runs["main_out"][-5000:]
    rows = runs["main_rows"]
    ran: dict[str, int] = {}
    for r in rows:
        ran[r["rule"]] = ran.get(r["rule"], 0) + 1
    assert ran == runs["planned"], f"planned {runs['planned']}, sacct:\n{table(rows)}"
    assert {r["State"] for r in rows} == {"COMPLETED"}, table(rows)
    assert len({r["JobID"] for r in rows}) == len(rows)
    done = "report/index.html" if FULL else "report/sections/curation.html"
    assert (runs["wd"] / "results/synthetic-hiwl5" / done).exists()


def test_gpu_rules_get_one_gpu_and_the_others_none(runs):
    rows, gpu_rules = runs["main_rows"], runs["gpu_rules"]
    assert "gpu_probe" in gpu_rules
    for r in rows:
        if r["rule"] in gpu_rules:
            assert "gres/gpu=1" in r["AllocTRES"], table(rows)
        else:
            assert "gres/gpu" not in r["AllocTRES"], table(rows)
    # a stage on `device: cpu` asks Slurm for no GPU, and for its threads as CPUs of its one task
    cpu_rows = [r for r in rows if r["rule"] == "train_representation"]
    assert cpu_rows and "train_representation" not in gpu_rules, table(rows)
    assert "train_expert" in gpu_rules  # the distillation's stage, on `device: auto`
    # a multi-instance GPU rule (like train_expert): one Slurm job per instance
    for rule in gpu_rules:
        jobs = [r["JobID"] for r in rows if r["rule"] == rule]
        assert len(jobs) == runs["planned"][rule] and len(set(jobs)) == len(jobs)
    # inside Slurm, gzmorph leaves the GPU to Slurm (no lock-file slot) and says so in the log
    for i in (1, 2):
        seen = (runs["wd"] / f"results/gpu_probe/{i}.txt").read_text()
        assert "SLURM_JOB_ID=None" not in seen, seen
        assert "inside Slurm job" in (runs["wd"] / f"results/gpu_probe/{i}.log").read_text()


def test_forcerun_of_one_target_submits_exactly_one_job(runs):
    assert runs["forced_rc"] == 0, runs["forced_out"][-5000:]
    rows = runs["forced_rows"]
    assert [(r["rule"], r["State"]) for r in rows] == [("split", "COMPLETED")], table(rows)


def test_time_limit_kill_shows_timeout_and_log_and_rerun_continues(runs):
    out, rows = runs["killed_out"], runs["killed_rows"]
    assert runs["killed_rc"] != 0
    assert [(r["rule"], r["State"]) for r in rows] == [("first", "COMPLETED"), ("slow", "TIMEOUT")], table(rows)
    slow_id = rows[1]["JobID"]
    assert f"SLURM status is: 'TIMEOUT'" in out, out[-4000:]
    log = runs["to"] / ".snakemake" / "slurm_logs" / "rule_slow" / f"{slow_id}.log"
    assert str(log) in out and log.exists(), out[-4000:]
    assert "DUE TO TIME LIMIT" in log.read_text()
    # the rerun submits only what did not finish
    assert runs["rerun_rc"] == 0, runs["rerun_out"][-4000:]
    assert [(r["rule"], r["State"]) for r in runs["rerun_rows"]] == [("slow", "COMPLETED")]


@pytest.mark.parametrize("resources, message", [
    (["slurm_account=nosuch"], "The given account nosuch appears to be invalid"),
    (["slurm_partition=nosuch"], "invalid partition specified: nosuch"),
])
def test_unknown_account_or_partition_fails_at_submission_with_the_reason(cluster, tmp_path, resources,
                                                                          message):
    shutil.copy(CLUSTER / "timeout.smk", tmp_path / "Snakefile")
    defaults = {"slurm_partition": "debug", "slurm_account": "ci", "runtime": "5", "mem_mb": "500"}
    defaults.update(dict(r.split("=", 1) for r in resources))
    proc = smk_slurm(tmp_path, cluster, "first.txt", "--default-resources",
                     *(f"{k}={v}" for k, v in defaults.items()))
    rc, out = finish(proc, timeout=300)
    assert rc != 0 and message in out, out[-4000:]
    assert sacct(cluster, tmp_path) == []  # nothing was submitted


def test_more_gpus_than_the_cluster_has_is_refused_with_slurms_reason(cluster, tmp_path):
    shutil.copy(CLUSTER / "timeout.smk", tmp_path / "Snakefile")
    proc = smk_slurm(tmp_path, cluster, "first.txt", "--set-resources", "first:gpu=3")
    rc, out = finish(proc, timeout=300)
    assert rc != 0 and "Requested node configuration is not available" in out, out[-4000:]
    assert "COMPLETED" not in {r["State"] for r in sacct(cluster, tmp_path)}


def test_a_training_rule_runs_as_one_slurm_job_of_two_tasks(cluster, tmp_path):
    """classify.processes: 2 -> train_classifier is one sbatch of 2 tasks (gres/gpu=2), whose script
    starts the 2 ranks with srun (step .0, NTasks 2); they form one process group (gloo: the test
    cluster's GPUs are /dev/null) and train the weights a local 2-process run (torchrun) trains."""
    import torch
    from safetensors.torch import load_file

    wd = copy_workflow(tmp_path / "ddp")
    classify = {"epochs": 2, "patience": 0, "models": ["flat"], "processes": 2, "threads": 1,
                "model_kwargs": {"dropout": 0.0}}
    (wd / "test-config.yaml").write_text(yaml.safe_dump({**TINY, "classify": classify}))
    configs = ["--configfile", "config.yaml", "test-config.yaml"]
    model = wd / "results/synthetic-hiwl5/classify/flat/model.pt"
    # the curated data and the reference: the same rule as 2 local processes (torchrun)
    local = subprocess.run([sys.executable, "-m", "snakemake", "--cores", "2", str(model.relative_to(wd)), *configs],
                           cwd=wd, env=own_library(cluster, wd), capture_output=True, text=True, timeout=900,
                           check=False)
    assert local.returncode == 0, local.stderr[-4000:]
    reference = load_file(model)
    log = wd / "results/synthetic-hiwl5/logs/train_classifier_flat.log"
    assert "with torchrun (CPU, gloo)" in log.read_text()

    proc = smk_slurm(wd, cluster, str(model.relative_to(wd)), *configs, "--forcerun", "train_classifier")
    rc, out = finish(proc, timeout=900)
    assert rc == 0, out[-5000:]
    rows = sacct(cluster, wd)
    assert [(r["rule"], r["State"]) for r in rows] == [("train_classifier", "COMPLETED")], table(rows)
    job = rows[0]["JobID"]
    assert "gres/gpu=2" in rows[0]["AllocTRES"], table(rows)
    steps = subprocess.run(["sacct", "-j", job, "-P", "-n", "-o", "JobID,JobName,NTasks,AllocTRES,State"],
                           env=cluster, capture_output=True, text=True, timeout=60, check=True).stdout
    print(f"\nsacct -j {job} -o JobID,JobName,NTasks,AllocTRES,State:\n{steps}")
    step = {line.split("|")[0]: line.split("|") for line in steps.splitlines() if line.strip()}
    assert step[f"{job}.0"][2] == "2" and step[f"{job}.0"][4] == "COMPLETED", steps  # the srun step: 2 tasks
    text = log.read_text()
    assert f"starting 2 training processes on 1 node(s) with srun in Slurm job {job}" in text, text[-3000:]
    group = re.search(r"process group of 2 ranks \(gloo\): 0:(\S+)/pid (\d+)/cpu, 1:(\S+)/pid (\d+)/cpu", text)
    assert group and group.group(2) != group.group(4), text[-3000:]
    print(group.group(0))
    trained = load_file(model)
    assert all(torch.equal(trained[k], reference[k]) for k in reference)

    # on `device: cpu` (a cluster without GPUs): one sbatch of 2 CPU tasks, no GPU asked for
    (wd / "test-config.yaml").write_text(yaml.safe_dump({**TINY, "classify": {**classify, "device": "cpu"}}))
    proc = smk_slurm(wd, cluster, str(model.relative_to(wd)), *configs)
    rc, out = finish(proc, timeout=900)
    assert rc == 0, out[-5000:]
    rows = sacct(cluster, wd)[1:]
    assert [(r["rule"], r["State"]) for r in rows] == [("train_classifier", "COMPLETED")], table(rows)
    assert "gres/gpu" not in rows[0]["AllocTRES"], table(rows)
    steps = subprocess.run(["sacct", "-j", rows[0]["JobID"], "-P", "-n", "-o", "JobID,NTasks,State"],
                           env=cluster, capture_output=True, text=True, timeout=60, check=True).stdout
    assert f"{rows[0]['JobID']}.0|2|COMPLETED" in steps, steps
    assert "process group of 2 ranks (gloo)" in log.read_text()
    trained = load_file(model)
    assert all(torch.equal(trained[k], reference[k]) for k in reference)
