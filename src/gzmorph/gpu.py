"""Which GPU a job of a local run uses, and how many GPU jobs may run at once.

Snakemake's ``gpu`` resource is only a counter: it never sets ``CUDA_VISIBLE_DEVICES``, so two
GPU jobs of a local run would both land on GPU 0.  Here each running GPU job claims a *slot*:
an exclusive ``fcntl.flock`` on ``<lock_dir>/gpu<id>.lock`` for one visible device, then sets
``CUDA_VISIBLE_DEVICES`` to that device before torch initialises CUDA.  When every device is
taken the job waits; the kernel releases a lock when its process exits, also when it crashes
or is killed, so a slot is never leaked.

* Visible devices: ``CUDA_VISIBLE_DEVICES`` when set (``""``/``-1`` = none), else one per line
  of ``nvidia-smi -L``, else none.
* No visible device: nothing is claimed; the job runs on the CPU.
* Inside a Slurm job (``SLURM_JOB_ID`` set): Slurm already chose the device; nothing is touched.
* Lock folder: ``$GZMORPH_GPU_LOCK_DIR``, else ``<tmp>/gzmorph-gpu-locks`` (shared by every run
  on the machine, so two workflows in different folders do not share a GPU either; made sticky
  and world-writable like ``/tmp`` when this module creates it, while a folder the user names keeps
  its mode).  Lock files are opened only as regular files, never through a symbolic link, and
  read-only when another user created them (``flock`` needs no write access).

``gpu_resource_limit`` gives the value of Snakemake's global ``--resources gpu=K`` that the
workflow profile (profiles/default) uses: ``max(1, number of visible GPUs)`` for a local run
(with no GPU, GPU rules still run, one at a time, on the CPU), and no limit when the jobs go to
a cluster executor, where the scheduler assigns the GPUs.  ``job_gpus`` is what a rule asks for:
one GPU, or none for a stage whose ``device`` is ``cpu`` (a cluster without GPUs gets no GPU
request, and such jobs are not queued behind the GPU ones).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from .io import InputError

# executors that run jobs on this machine (anything else submits them elsewhere)
LOCAL_EXECUTORS = {None, "", "local", "dryrun", "touch"}
# the "no limit" value of the gpu counter for cluster runs
CLUSTER_GPU_LIMIT = 10_000

log = logging.getLogger("gzmorph.gpu")


def visible_gpus(environ: dict | None = None) -> list[str]:
    """The device ids a job may use: from CUDA_VISIBLE_DEVICES, else ``nvidia-smi -L``, else []."""
    env = os.environ if environ is None else environ
    cvd = env.get("CUDA_VISIBLE_DEVICES")
    if cvd is not None:
        cvd = cvd.strip()
        if cvd in ("", "-1", "none", "NoDevFiles"):
            return []
        devices = []
        for d in cvd.split(","):
            d = d.strip()
            if d == "-1":  # CUDA ignores everything from the first invalid id on
                break
            if d:
                devices.append(d)
        return devices
    smi = shutil.which("nvidia-smi")
    if not smi:
        return []
    try:
        out = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return []
    if out.returncode != 0:
        return []
    return [m.group(1) for m in re.finditer(r"^GPU (\d+):", out.stdout, re.M)]


def _executor_of_profile(name: str, environ) -> str | None:
    """The ``executor:`` of a Snakemake profile given by folder or name (None if not found)."""
    import yaml

    home = Path(environ.get("HOME", "~")).expanduser()
    xdg = Path(environ.get("XDG_CONFIG_HOME", home / ".config"))
    for folder in (Path(name), xdg / "snakemake" / name, Path("/etc/xdg/snakemake") / name):
        for fname in ("config.yaml", "profile.yaml", "config.v8+.yaml", "config.v9+.yaml"):
            f = folder / fname if folder.is_dir() else None
            if f is not None and f.is_file():
                try:
                    data = yaml.safe_load(f.read_text())
                except (OSError, yaml.YAMLError):
                    return None
                return data.get("executor") if isinstance(data, dict) else None
    return None


def run_executor(argv: list[str] | None = None, environ: dict | None = None) -> str | None:
    """The executor a ``snakemake`` command line uses: ``--executor``/``-e``, else its profiles'
    (``--profile``, ``--workflow-profile`` and ``$SNAKEMAKE_PROFILE``)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    env = os.environ if environ is None else environ
    profiles = [env["SNAKEMAKE_PROFILE"]] if env.get("SNAKEMAKE_PROFILE") else []
    executor, workflow_profiles = None, []
    i = 0
    while i < len(argv):
        a = argv[i]
        nxt = argv[i + 1] if i + 1 < len(argv) else None
        if a in ("--executor", "-e") and nxt is not None:
            executor, i = nxt, i + 2
            continue
        if a.startswith("--executor="):
            executor = a.split("=", 1)[1]
        elif a in ("--profile", "--workflow-profile") and nxt is not None:
            (profiles if a == "--profile" else workflow_profiles).append(nxt)
            i += 2
            continue
        elif a.startswith(("--profile=", "--workflow-profile=")):
            (profiles if a.startswith("--profile=") else workflow_profiles).append(a.split("=", 1)[1])
        i += 1
    if executor is not None:
        return executor
    for p in reversed(profiles + workflow_profiles):  # the last wins, and a workflow profile over --profile
        e = _executor_of_profile(p, env)
        if e is not None:
            return e
    return None


def job_gpus(device: str) -> int:
    """The ``gpu`` resource of a one-process job on ``device``: 0 for ``cpu``, else 1 (``auto`` may
    find one; ``cuda``/``cuda:N`` needs one)."""
    return 0 if str(device).strip().lower() == "cpu" else 1


def gpu_resource_limit(argv: list[str] | None = None, environ: dict | None = None) -> int:
    """The global ``gpu`` counter for this snakemake invocation (see the module docstring)."""
    if run_executor(argv, environ) not in LOCAL_EXECUTORS:
        return CLUSTER_GPU_LIMIT
    return max(1, len(visible_gpus(environ)))


def default_lock_dir(environ: dict | None = None) -> Path:
    env = os.environ if environ is None else environ
    if env.get("GZMORPH_GPU_LOCK_DIR"):
        return Path(env["GZMORPH_GPU_LOCK_DIR"])
    return _shared_lock_dir()


def _shared_lock_dir() -> Path:
    return Path(tempfile.gettempdir()) / "gzmorph-gpu-locks"


@dataclass
class GpuClaim:
    """What a job got: ``devices`` it holds (empty: CPU or Slurm's choice) and why."""

    devices: list[str]
    reason: str  # "claimed" | "cpu" | "slurm"
    _fds: list[int] = field(default_factory=list, repr=False)
    _env: dict | None = field(default=None, repr=False)  # where CUDA_VISIBLE_DEVICES was set
    _before: str | None = field(default=None, repr=False)  # ... and its value before

    def describe(self) -> str:
        if self.reason == "slurm":
            return (f"inside Slurm job {os.environ.get('SLURM_JOB_ID')}: using the GPU(s) Slurm assigned "
                    f"(CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', '<unset>')})")
        if self.reason == "cpu":
            return "no GPU visible: running on the CPU"
        return f"claimed GPU {','.join(self.devices)} (CUDA_VISIBLE_DEVICES={','.join(self.devices)})"

    def release(self) -> None:
        """Give the slot(s) back and restore CUDA_VISIBLE_DEVICES (idempotent)."""
        if self._env is not None:
            if self._before is None:
                self._env.pop("CUDA_VISIBLE_DEVICES", None)
            else:
                self._env["CUDA_VISIBLE_DEVICES"] = self._before
            self._env = None
        for fd in self._fds:
            with contextlib.suppress(OSError):
                fcntl.flock(fd, fcntl.LOCK_UN)
            with contextlib.suppress(OSError):
                os.close(fd)
        self._fds.clear()


def _lock_name(device: str) -> str:
    return "gpu" + re.sub(r"[^A-Za-z0-9_.-]", "_", device) + ".lock"


def _open_lock(path: Path) -> int:
    """The lock file, never through a symbolic link and only a regular file.  A file another user
    created (mode 0o644 under their umask) is opened read-only: flock needs no write access."""
    flags = os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        try:
            fd = os.open(path, os.O_RDWR | flags, 0o666)
        except PermissionError:
            fd = os.open(path, os.O_RDONLY | flags)
    except OSError as err:
        what = "a symbolic link" if err.errno == errno.ELOOP else err.strerror
        raise InputError(f"{path}: cannot use this GPU lock file ({what}); set GZMORPH_GPU_LOCK_DIR to a "
                         "folder of your own") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise InputError(f"{path}: the GPU lock file is not a regular file; set GZMORPH_GPU_LOCK_DIR to a "
                         "folder of your own")
    return fd


def _try_lock(path: Path) -> int | None:
    fd = _open_lock(path)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as err:
        os.close(fd)
        if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return None
        raise
    with contextlib.suppress(OSError):  # the holder's pid, for people; read-only when another user made it
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
    return fd


def acquire_gpus(n: int = 1, lock_dir: str | Path | None = None, poll: float = 1.0,
                 timeout: float | None = None, environ: dict | None = None,
                 logger: logging.Logger | None = None) -> GpuClaim:
    """Claim ``n`` free visible GPUs (waiting while all are busy) and point CUDA at them.

    Sets ``os.environ["CUDA_VISIBLE_DEVICES"]`` (unless in Slurm or on the CPU); call before torch
    initialises CUDA.  ``release()`` (or the process's exit) gives the slot back.  Raises
    ``TimeoutError`` after ``timeout`` seconds of waiting (default: wait as long as it takes).
    """
    env = os.environ if environ is None else environ
    logger = logger or log
    if env.get("SLURM_JOB_ID"):
        return GpuClaim([], "slurm")
    devices = visible_gpus(env)
    if not devices:
        return GpuClaim([], "cpu")
    n = max(1, min(int(n), len(devices)))
    folder = Path(lock_dir) if lock_dir else default_lock_dir(env)
    shared = folder == _shared_lock_dir()
    try:
        folder.mkdir(parents=True, exist_ok=not shared)
        if shared:  # made here: every user of the machine shares it, as /tmp itself (sticky)
            folder.chmod(0o1777)
    except FileExistsError:
        pass
    start = time.monotonic()
    waiting_logged = False
    # start the scan at a process-dependent device so that concurrent starters rarely collide
    offset = os.getpid() % len(devices)
    order = devices[offset:] + devices[:offset]
    while True:
        got: list[tuple[str, int]] = []
        for d in order:
            fd = _try_lock(folder / _lock_name(d))
            if fd is not None:
                got.append((d, fd))
                if len(got) == n:
                    break
        if len(got) == n:
            chosen = [d for d in devices if d in {g[0] for g in got}]  # keep the visible order
            before = env.get("CUDA_VISIBLE_DEVICES")
            env["CUDA_VISIBLE_DEVICES"] = ",".join(chosen)
            if "torch" in sys.modules and getattr(sys.modules["torch"], "cuda", None) is not None:
                with contextlib.suppress(Exception):
                    if sys.modules["torch"].cuda.is_initialized():
                        logger.warning("CUDA was initialised before the GPU slot was claimed; "
                                       "torch may not use GPU %s", ",".join(chosen))
            return GpuClaim(chosen, "claimed", [g[1] for g in got], env, before)
        GpuClaim([], "claimed", [fd for _, fd in got]).release()  # not enough: give back, wait
        if timeout is not None and time.monotonic() - start > timeout:
            raise TimeoutError(f"no free GPU among {','.join(devices)} after {timeout:.0f} s (locks in {folder})")
        if not waiting_logged:
            logger.info("all %d GPU(s) %s are busy; waiting for one to be free (locks in %s)",
                        len(devices), ",".join(devices), folder)
            waiting_logged = True
        time.sleep(poll)


@contextlib.contextmanager
def gpu_slot(n: int = 1, **kwargs):
    """``acquire_gpus`` as a context manager: on exit the slot is released and the old
    ``CUDA_VISIBLE_DEVICES`` restored."""
    claim = acquire_gpus(n, **kwargs)
    try:
        yield claim
    finally:
        claim.release()


def _main(argv: list[str] | None = None) -> int:
    """``python -m gzmorph.gpu``: print the visible GPUs and the local gpu limit."""
    devices = visible_gpus()
    print(f"visible GPUs: {','.join(devices) if devices else 'none (GPU rules run on the CPU)'}")
    print(f"gpu limit for a local run: {max(1, len(devices))}")
    print(f"lock folder: {default_lock_dir()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())
