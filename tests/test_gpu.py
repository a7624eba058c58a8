"""Local GPU assignment (gzmorph.gpu): lock-file slots, CUDA_VISIBLE_DEVICES, the gpu limit."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from gzmorph import gpu
from gzmorph.smk import rule_context

REPO = Path(__file__).resolve().parents[1]

CLAIMER = textwrap.dedent("""
    import os, sys, time
    from pathlib import Path
    from gzmorph.gpu import acquire_gpus
    out = Path(sys.argv[1])
    claim = acquire_gpus(1, poll=0.1)
    out.write_text(f"{claim.reason} {os.environ.get('CUDA_VISIBLE_DEVICES', '')}")
    release = out.with_suffix(".release")
    while not release.exists():
        time.sleep(0.05)
""")


@pytest.fixture
def gpu_env(tmp_path, monkeypatch):
    """Two fake visible GPUs, 3 and 5, a private lock folder, no Slurm."""
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")
    monkeypatch.setenv("GZMORPH_GPU_LOCK_DIR", str(tmp_path / "locks"))
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    return tmp_path


def _start(tmp_path: Path, name: str) -> tuple[subprocess.Popen, Path]:
    out = tmp_path / f"{name}.txt"
    proc = subprocess.Popen([sys.executable, "-c", CLAIMER, str(out)], env=os.environ.copy())
    return proc, out


def _wait_for(path: Path, timeout: float = 30) -> str:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if path.exists() and path.read_text():
            return path.read_text()
        time.sleep(0.05)
    raise AssertionError(f"{path} not written within {timeout} s")


def _finish(proc: subprocess.Popen, out: Path) -> None:
    out.with_suffix(".release").touch()
    proc.wait(timeout=30)


def test_visible_gpus_from_cuda_visible_devices():
    assert gpu.visible_gpus({"CUDA_VISIBLE_DEVICES": "3,5"}) == ["3", "5"]
    assert gpu.visible_gpus({"CUDA_VISIBLE_DEVICES": " 0 , 1 "}) == ["0", "1"]
    assert gpu.visible_gpus({"CUDA_VISIBLE_DEVICES": "GPU-8f2a,GPU-91c3"}) == ["GPU-8f2a", "GPU-91c3"]
    assert gpu.visible_gpus({"CUDA_VISIBLE_DEVICES": ""}) == []
    assert gpu.visible_gpus({"CUDA_VISIBLE_DEVICES": "-1"}) == []
    assert gpu.visible_gpus({"CUDA_VISIBLE_DEVICES": "2,-1,4"}) == ["2"]  # CUDA stops at an invalid id


def test_visible_gpus_from_nvidia_smi_or_none(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    assert gpu.visible_gpus({}) == []  # no nvidia-smi: CPU only
    smi = tmp_path / "nvidia-smi"
    smi.write_text("#!/bin/sh\necho 'GPU 0: NVIDIA A100 (UUID: GPU-1)'\necho 'GPU 1: NVIDIA A100 (UUID: GPU-2)'\n")
    smi.chmod(0o755)
    assert gpu.visible_gpus({}) == ["0", "1"]
    smi.write_text("#!/bin/sh\necho 'NVIDIA-SMI has failed' >&2\nexit 9\n")
    assert gpu.visible_gpus({}) == []


def test_gpu_limit_local_is_at_least_one_and_unlimited_on_a_cluster(tmp_path):
    assert gpu.gpu_resource_limit([], {"CUDA_VISIBLE_DEVICES": "3,5"}) == 2
    assert gpu.gpu_resource_limit([], {"CUDA_VISIBLE_DEVICES": ""}) == 1  # CPU: one at a time, no deadlock
    assert gpu.gpu_resource_limit(["-e", "local"], {"CUDA_VISIBLE_DEVICES": "0"}) == 1
    cluster = gpu.CLUSTER_GPU_LIMIT
    assert gpu.gpu_resource_limit(["--executor", "slurm"], {"CUDA_VISIBLE_DEVICES": ""}) == cluster
    assert gpu.gpu_resource_limit(["--executor=slurm"], {}) == cluster
    assert gpu.gpu_resource_limit(["--profile", str(REPO / "profiles/slurm")], {"CUDA_VISIBLE_DEVICES": ""}) == cluster
    assert gpu.gpu_resource_limit([f"--profile={REPO / 'profiles/slurm'}"], {"CUDA_VISIBLE_DEVICES": ""}) == cluster
    assert gpu.gpu_resource_limit([], {"SNAKEMAKE_PROFILE": str(REPO / "profiles/slurm")}) == cluster
    local_profile = tmp_path / "laptop"
    local_profile.mkdir()
    (local_profile / "config.yaml").write_text("cores: 4\n")
    assert gpu.gpu_resource_limit(["--profile", str(local_profile)], {"CUDA_VISIBLE_DEVICES": "0,1,2"}) == 3
    # --workflow-profile, Snakemake's own place for a workflow's profile, and it wins over --profile
    slurm = str(REPO / "profiles/slurm")
    assert gpu.run_executor(["--workflow-profile", slurm], {}) == "slurm"
    assert gpu.run_executor([f"--workflow-profile={slurm}", "--profile", str(local_profile)], {}) == "slurm"
    assert gpu.gpu_resource_limit(["--workflow-profile", slurm], {"CUDA_VISIBLE_DEVICES": ""}) == cluster


@pytest.mark.parametrize("env, expected", [
    ({"CUDA_VISIBLE_DEVICES": "3,5"}, "gpu=2"),
    ({"CUDA_VISIBLE_DEVICES": ""}, "gpu=1"),
])
def test_default_profile_sets_the_gpu_limit(env, expected):
    """The workflow profile computes --resources gpu=K; a cluster profile lifts it."""
    code = ("import sys; from snakemake.cli import parse_args; "
            "print('gpu=%d' % parse_args(sys.argv[1:])[1].resources['gpu'].value)")
    run_env = {**os.environ, **env}
    run_env.pop("SNAKEMAKE_PROFILE", None)
    local = subprocess.run([sys.executable, "-c", code, "-n"], cwd=REPO, env=run_env,
                           capture_output=True, text=True, timeout=120)
    assert local.stdout.strip() == expected, local.stderr[-2000:]
    cluster = subprocess.run([sys.executable, "-c", code, "-n", "--profile", "profiles/slurm"], cwd=REPO,
                             env=run_env, capture_output=True, text=True, timeout=120)
    assert cluster.stdout.strip() == f"gpu={gpu.CLUSTER_GPU_LIMIT}", cluster.stderr[-2000:]
    explicit = subprocess.run([sys.executable, "-c", code, "-n", "--resources", "gpu=7"], cwd=REPO,
                              env=run_env, capture_output=True, text=True, timeout=120)
    assert explicit.stdout.strip() == "gpu=7", explicit.stderr[-2000:]


def test_concurrent_jobs_get_distinct_gpus_a_third_waits_a_killed_holder_frees_its_slot(gpu_env):
    a, out_a = _start(gpu_env, "a")
    b, out_b = _start(gpu_env, "b")
    try:
        got = {_wait_for(out_a), _wait_for(out_b)}
        assert got == {"claimed 3", "claimed 5"}  # each its own device

        c, out_c = _start(gpu_env, "c")
        time.sleep(2)
        assert not out_c.exists() and c.poll() is None  # both busy: the third waits
        _finish(a, out_a)  # a finishes normally
        assert _wait_for(out_c) == out_a.read_text()  # ... and c gets a's device

        d, out_d = _start(gpu_env, "d")
        time.sleep(1.5)
        assert not out_d.exists()
        b.send_signal(signal.SIGKILL)  # a crashed holder: the kernel drops its lock
        b.wait(timeout=30)
        assert _wait_for(out_d) == out_b.read_text()
        _finish(c, out_c)
        _finish(d, out_d)
    finally:
        for p in (a, b):
            if p.poll() is None:
                p.kill()
        for name in ("c", "d"):
            proc = locals().get(name)
            if proc is not None and proc.poll() is None:
                proc.kill()


def test_inside_slurm_nothing_is_touched(gpu_env, monkeypatch):
    monkeypatch.setenv("SLURM_JOB_ID", "1234")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    claim = gpu.acquire_gpus(1)
    assert claim.reason == "slurm" and claim.devices == []
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "1"
    assert not (gpu_env / "locks").exists()
    assert "Slurm job 1234" in claim.describe()


def test_a_planted_symlink_is_refused_and_a_named_folder_keeps_its_mode(gpu_env):
    """The lock file is never opened through a link (whose target the pid write would overwrite),
    and only the shared default folder is made world-writable (sticky), never one the user names."""
    locks = gpu_env / "locks"
    locks.mkdir(mode=0o700)
    victim = gpu_env / "victim.txt"
    victim.write_text("precious\n")
    for d in ("3", "5"):
        (locks / f"gpu{d}.lock").symlink_to(victim)
    with pytest.raises(gpu.InputError, match=r"gpu[35]\.lock: cannot use this GPU lock file \(a symbolic link\)"):
        gpu.acquire_gpus(1, timeout=1)
    assert victim.read_text() == "precious\n"
    assert locks.stat().st_mode & 0o7777 == 0o700


def test_no_gpu_runs_on_cpu_without_a_lock(gpu_env, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    claim = gpu.acquire_gpus(1)
    assert claim.reason == "cpu" and claim.devices == []
    assert os.environ["CUDA_VISIBLE_DEVICES"] == ""
    assert not (gpu_env / "locks").exists()


def test_slot_context_restores_the_environment_and_releases(gpu_env):
    with gpu.gpu_slot(2) as both:
        assert both.devices == ["3", "5"] and os.environ["CUDA_VISIBLE_DEVICES"] == "3,5"
        with pytest.raises(TimeoutError):
            gpu.acquire_gpus(1, poll=0.05, timeout=0.3)  # all taken
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "3,5"
    with gpu.gpu_slot(1) as one:  # released: free again
        assert one.devices in (["3"], ["5"]) and os.environ["CUDA_VISIBLE_DEVICES"] == one.devices[0]


def _fake_snakemake(tmp_path: Path, rule: str, gpus: int | None):
    resources = SimpleNamespace(**({"gpu": gpus} if gpus is not None else {}))
    return SimpleNamespace(log=[str(tmp_path / f"{rule}.log")], threads=1, config={"seed": 1},
                           params={}, rule=rule, resources=resources)


def test_rule_context_claims_a_gpu_for_gpu_rules_only(gpu_env):
    smk = _fake_snakemake(gpu_env, "train_classifier", 1)
    with rule_context(smk):
        device = os.environ["CUDA_VISIBLE_DEVICES"]
        assert device in ("3", "5")
        both = {"CUDA_VISIBLE_DEVICES": "3,5", "GZMORPH_GPU_LOCK_DIR": os.environ["GZMORPH_GPU_LOCK_DIR"]}
        with gpu.gpu_slot(1, poll=0.05, timeout=5, environ=both) as other:  # the other one is still free
            assert other.devices == [{"3": "5", "5": "3"}[device]]
    log = (gpu_env / "train_classifier.log").read_text()
    assert f"rule train_classifier: claimed GPU {device}" in log
    with gpu.gpu_slot(2, timeout=1):  # both free again after the rule
        pass

    os.environ["CUDA_VISIBLE_DEVICES"] = "3,5"
    with rule_context(_fake_snakemake(gpu_env, "select", None)):
        assert os.environ["CUDA_VISIBLE_DEVICES"] == "3,5"  # not a GPU rule: untouched
    assert "GPU" not in (gpu_env / "select.log").read_text()


def test_rule_context_releases_the_gpu_when_the_rule_fails(gpu_env):
    with pytest.raises(RuntimeError):
        with rule_context(_fake_snakemake(gpu_env, "train_classifier", 1)):
            raise RuntimeError("boom")
    with gpu.gpu_slot(2, timeout=1) as both:
        assert both.devices == ["3", "5"]


SNAKEFILE = textwrap.dedent("""
    rule all:
        input: expand("out/{i}.txt", i=range(5))

    rule gpu_job:
        output: "out/{i}.txt"
        resources: gpu=1
        threads: 1
        log: "logs/{i}.log"
        script: "job.py"
""")
JOB = textwrap.dedent("""
    import os, time
    from gzmorph.smk import rule_context
    with rule_context(snakemake) as (params, log):
        start = time.time()
        time.sleep(3)  # longer than the spread of the jobs' start-up, so that two hold a GPU at once
        with open(snakemake.output[0], "w") as f:
            f.write(f"{os.environ.get('CUDA_VISIBLE_DEVICES')} {start} {time.time()}")
""")


@pytest.mark.e2e
def test_local_run_never_puts_two_jobs_on_one_gpu(tmp_path):
    """5 GPU jobs, --cores 5, two fake GPUs: the default profile runs two at a time, on 3 and 5."""
    (tmp_path / "profiles").mkdir()
    (tmp_path / "profiles" / "default").symlink_to(REPO / "profiles" / "default")
    (tmp_path / "Snakefile").write_text(SNAKEFILE)
    (tmp_path / "job.py").write_text(JOB)
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "3,5", "GZMORPH_GPU_LOCK_DIR": str(tmp_path / "locks")}
    env.pop("SLURM_JOB_ID", None)
    out = subprocess.run([sys.executable, "-m", "snakemake", "--cores", "5"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    runs = []
    for f in sorted((tmp_path / "out").glob("*.txt")):
        dev, start, end = f.read_text().split()
        runs.append((dev, float(start), float(end)))
    assert len(runs) == 5 and {d for d, _, _ in runs} == {"3", "5"}
    for i, (d1, s1, e1) in enumerate(runs):
        overlapping = [d2 for j, (d2, s2, e2) in enumerate(runs) if j != i and s2 < e1 and s1 < e2]
        assert len(overlapping) <= 1 and d1 not in overlapping, runs
    assert any("claimed GPU" in p.read_text() for p in (tmp_path / "logs").glob("*.log"))


def test_every_gpu_rule_of_the_workflow_is_in_the_slurm_profile():
    """A rule with `resources: gpu=...` gets its GPU settings (partition, model, CPUs) from the profile."""
    import re

    import yaml

    gpu_rules = set()
    for smk in (REPO / "workflow" / "rules").glob("*.smk"):
        for block in re.split(r"\n(?=\s*rule \w+:)", smk.read_text()):  # rules may sit under an if/else
            m = re.match(r"\s*rule (\w+):", block)
            if m and re.search(r"^\s+gpu\s*=", block, re.M):
                gpu_rules.add(m.group(1))
    for smk in (REPO / "workflow" / "rules").glob("*.smk"):  # `use rule A as B`: B asks for A's GPU
        gpu_rules |= {b for a, b in re.findall(r"^\s*use rule (\w+) as (\w+)", smk.read_text(), re.M) if a in gpu_rules}
    assert "evaluate_full" in gpu_rules
    profile = yaml.safe_load((REPO / "profiles" / "slurm" / "config.yaml").read_text())
    assert gpu_rules <= set(profile["set-resources"]), gpu_rules - set(profile["set-resources"])
    for rule in gpu_rules:
        # one GPU a job, or none set here: the training rules take their count from config (processes)
        assert profile["set-resources"][rule].get("gpu", 1) == 1


def test_rule_context_keeps_library_caches_under_results(tmp_path, monkeypatch):
    """matplotlib's font list (and torch.compile's and Triton's kernels) went to ~/.cache, /tmp:
    a rule points them beside its logs, leaves a cache the user chose alone, and restores the rest."""
    from gzmorph.smk import LIBRARY_CACHES

    for var in LIBRARY_CACHES:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("TRITON_CACHE_DIR", "/users/own")
    logs = tmp_path / "results" / "d" / "logs"
    logs.mkdir(parents=True)
    fake = SimpleNamespace(log=[str(logs / "report.log")], threads=1, config={}, params={}, rule="report",
                           resources=SimpleNamespace())
    with rule_context(fake):
        assert os.environ["MPLCONFIGDIR"] == str(tmp_path / "results" / "d" / ".cache" / "matplotlib")
        assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == str(tmp_path / "results" / "d" / ".cache" / "torchinductor")
        assert os.environ["TRITON_CACHE_DIR"] == "/users/own"
    assert "MPLCONFIGDIR" not in os.environ and os.environ["TRITON_CACHE_DIR"] == "/users/own"
