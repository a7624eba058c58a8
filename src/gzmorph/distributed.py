"""Data-parallel training over several processes (PyTorch DDP), one process per GPU.

**What runs.**  One training job is N processes (*ranks*), one per GPU (or N on the CPU, with the
``gloo`` backend, for tests and laptops), on one or more nodes.  Every rank runs the same
:func:`gzmorph.train.fit` -- still the one training loop -- which, when the process group has more
than one rank, wraps the model in ``DistributedDataParallel``, gives each rank its share of every
*global* batch and keeps the ranks in step (see :func:`gzmorph.train.fit`).  A job of one process
(``processes: 1``, the default, and every laptop run) never touches ``torch.distributed``.

**How the processes are started, and why.**  A workflow rule runs its script once; the script
calls :func:`launch`, which, for N > 1, starts the ranks and waits for them:

* on one machine with ``torchrun`` (``python -m torch.distributed.run --standalone``): PyTorch's
  own launcher, the standard for single-node DDP; it picks a free rendezvous port and, when one
  rank fails, stops the others;
* inside a Slurm allocation with ``srun``, one task per rank (``--kill-on-bad-exit``): the
  standard way to run DDP under Slurm (PyTorch's and Lightning's Slurm recipes), the only one that
  spans nodes without a second launcher per node, and the one that lets Slurm bind a GPU and the
  CPUs to each task and account for every task (``sacct`` shows NTasks).  The Snakemake Slurm
  executor submits such a job as one ``sbatch`` with N tasks when the rule declares ``tasks``,
  ``tasks_per_gpu=1``, ``nodes`` and ``mpi="srun"`` (:func:`rule_resources`): with ``mpi`` set the
  executor runs the rule's script once in the batch step instead of wrapping it in ``srun -n1``,
  and the script's ``srun`` starts the ranks -- the plugin's documented route for multi-task
  jobs, which works with Snakemake's ``script:`` directive (the script's ``snakemake`` object
  exists only in that first process; the ranks get plain keyword arguments).

Lightning Fabric would do the same with one more dependency and its own loop conventions; plain
``torch.distributed`` keeps :func:`gzmorph.train.fit` the single loop and adds nothing to install.

The ranks run ``python -m gzmorph.distributed <spec.json>``: a module-level function and its
JSON keyword arguments; rank 0's return value comes back as JSON.  Rank 0 alone writes outputs,
checkpoints, the metrics table, log lines and the progress bar; the other ranks log warnings and
errors only.  A rank that raises writes its error (one line) before exiting; :func:`launch` then
raises it (an :class:`~gzmorph.io.InputError` stays one), naming the rank.  A rank killed outright
(SIGKILL, out of memory) is named from the launcher's report.  Either way the last end-of-epoch
checkpoint stays, and a rerun resumes from it.

**Which process group.**  :func:`init` reads what the launcher set: ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``LOCAL_WORLD_SIZE``, ``MASTER_ADDR``/``MASTER_PORT`` (torchrun), or, under
``srun`` started by :func:`launch` (``GZMORPH_DDP=srun``), ``SLURM_PROCID``, ``SLURM_NTASKS``,
``SLURM_LOCALID`` and the first node of ``SLURM_STEP_NODELIST``.  Backend ``nccl`` on CUDA,
``gloo`` otherwise.  Each rank uses GPU ``LOCAL_RANK`` of those it sees (or its only one, when Slurm
binds one GPU per task); more ranks on a node than GPUs visible there is one :class:`InputError`,
as is a GPU shared by two ranks.

This module imports torch only inside functions: :func:`rule_resources` runs when the DAG is built.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from .io import InputError, one_line

log = logging.getLogger(__name__)

#: set by :func:`launch` for ranks started with srun (a plain Slurm job is not a DDP job)
ENV_MARK = "GZMORPH_DDP"
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class DistributedError(RuntimeError):
    """A rank of a data-parallel job failed; the message names the rank and its error."""


@dataclass(frozen=True)
class World:
    """This process's place in the job: global rank and size, rank and size on this node."""

    rank: int
    size: int
    local_rank: int
    local_size: int


# --------------------------------------------------------------------------- the process group

_STATE: dict = {"device": None, "objects": None}


def _tasks_per_node(spec: str | None, node: int) -> int | None:
    """``SLURM_STEP_TASKS_PER_NODE`` (``2(x3),1``) -> the count on node ``node``."""
    if not spec:
        return None
    counts = []
    for part in spec.split(","):
        m = re.fullmatch(r"(\d+)(?:\(x(\d+)\))?", part.strip())
        if not m:
            return None
        counts += [int(m.group(1))] * int(m.group(2) or 1)
    return counts[node] if 0 <= node < len(counts) else None


def env_world(environ: dict | None = None) -> World | None:
    """The job this process belongs to, from its environment; ``None`` for a single process."""
    env = os.environ if environ is None else environ
    if env.get("WORLD_SIZE"):  # torchrun (or anything that sets the env:// variables)
        size = int(env["WORLD_SIZE"])
        if size <= 1:
            return None
        return World(int(env.get("RANK", 0)), size, int(env.get("LOCAL_RANK", 0)),
                     int(env.get("LOCAL_WORLD_SIZE", size)))
    if env.get(ENV_MARK) == "srun" and env.get("SLURM_PROCID") is not None:
        size = int(env.get("SLURM_NTASKS") or env.get("SLURM_STEP_NUM_TASKS") or 1)
        if size <= 1:
            return None
        local = _tasks_per_node(env.get("SLURM_STEP_TASKS_PER_NODE") or env.get("SLURM_TASKS_PER_NODE"),
                                int(env.get("SLURM_NODEID", 0)))
        return World(int(env["SLURM_PROCID"]), size, int(env.get("SLURM_LOCALID", 0)), local or size)
    return None


def _dist():
    """``torch.distributed`` when a process group of this process exists, else ``None``."""
    if "torch" not in sys.modules:
        return None
    import torch.distributed as dist

    return dist if dist.is_available() and dist.is_initialized() else None


def world() -> int:
    """Number of ranks of the job (1 without a process group)."""
    dist = _dist()
    return dist.get_world_size() if dist else 1


def rank() -> int:
    """This process's rank (0 without a process group; the launcher's rank before :func:`init`)."""
    dist = _dist()
    if dist:
        return dist.get_rank()
    w = env_world()
    return w.rank if w else 0


def is_main() -> bool:
    """Whether this process writes outputs, checkpoints and logs (rank 0, or the only process)."""
    return rank() == 0


def rank_device(requested: str | None, w: World):
    """The torch device of rank ``w``: GPU ``local_rank`` of those visible (or the only one, when
    the launcher bound one GPU per task); the CPU when none is visible and none was asked for."""
    import torch

    want = str(requested or "auto").split(":")[0]  # a name or a torch.device (fit passes pick_device's)
    if want == "cpu" or (want == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    n = torch.cuda.device_count()
    if n == 0:
        raise InputError(f"device {requested!r}: no GPU is visible to rank {w.rank} on {socket.gethostname()}")
    if w.local_size <= n:
        return torch.device("cuda", w.local_rank)
    if n == 1:  # one GPU bound to each task (srun --gpus-per-task=1); a shared one is caught in init
        return torch.device("cuda", 0)
    raise InputError(f"{w.local_size} training processes on {socket.gethostname()} need one GPU each, "
                     f"but {n} are visible there")


def init(device: str | None = None, timeout_s: float = 1800):
    """Join the job's process group (idempotent); return this rank's torch device.

    ``None`` when this process is alone (no launcher variables): nothing is initialised.  A process
    group made by the caller (``torch.distributed.init_process_group``) is used as it is.
    """
    import datetime

    import torch
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        if _STATE["device"] is None:
            w = env_world() or World(dist.get_rank(), dist.get_world_size(), dist.get_rank(), dist.get_world_size())
            _STATE["device"] = rank_device(device, w)
        return _STATE["device"] if dist.get_world_size() > 1 else None
    w = env_world()
    if w is None:
        return None
    env = os.environ
    if env.get(ENV_MARK) == "srun":  # the env:// variables from Slurm's
        env.update(RANK=str(w.rank), WORLD_SIZE=str(w.size), LOCAL_RANK=str(w.local_rank),
                   LOCAL_WORLD_SIZE=str(w.local_size))
        first = _first_node(env.get("SLURM_STEP_NODELIST") or env.get("SLURM_JOB_NODELIST"))
        if first:
            env["MASTER_ADDR"] = first
    dev = rank_device(device, w)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    backend = "nccl" if dev.type == "cuda" else "gloo"
    dist.init_process_group(backend, init_method="env://", rank=w.rank, world_size=w.size,
                            timeout=datetime.timedelta(seconds=timeout_s))
    _STATE["device"] = dev
    # object collectives and barriers go through gloo (CPU) also when the tensors use nccl
    _STATE["objects"] = dist.new_group(backend="gloo") if backend == "nccl" else None
    _check_gpus_not_shared(dev)
    ranks = all_gather_object(f"{w.rank}:{socket.gethostname()}/pid {os.getpid()}/{dev}")
    log.info("process group of %d ranks (%s): %s", w.size, backend, ", ".join(ranks))
    return dev


def _first_node(nodelist: str | None) -> str | None:
    """The first host of a Slurm node list (``node[01-04],gpu7`` -> ``node01``)."""
    if not nodelist:
        return None
    scontrol = shutil.which("scontrol")
    if scontrol:
        try:
            out = subprocess.run([scontrol, "show", "hostnames", nodelist], check=False, capture_output=True,
                                 text=True, timeout=30)
            if out.returncode == 0 and out.stdout.split():
                return out.stdout.split()[0]
        except (OSError, subprocess.SubprocessError):
            pass
    m = re.match(r"([^,\[]+)(?:\[([^\]]+)\])?", nodelist)
    if not m:
        return None
    if not m.group(2):
        return m.group(1)
    return m.group(1) + re.split(r"[-,]", m.group(2))[0]


def _check_gpus_not_shared(dev) -> None:
    if dev.type != "cuda":
        return
    import torch

    props = torch.cuda.get_device_properties(dev)
    mine = (socket.gethostname(), str(getattr(props, "uuid", dev.index)))
    everyone = all_gather_object(mine)
    seen: dict = {}
    for r, key in enumerate(everyone):
        if key in seen:
            raise InputError(f"ranks {seen[key]} and {r} share GPU {key[1]} on {key[0]}: give each training "
                             "process its own GPU (Slurm: --gpus-per-task=1; locally: as many GPUs as processes)")
        seen[key] = r


def device():
    """This rank's device as :func:`init` chose it (``None`` before, or alone)."""
    return _STATE["device"]


def barrier() -> None:
    """Wait for every rank (nothing alone)."""
    dist = _dist()
    if dist and dist.get_world_size() > 1:
        dist.barrier(group=_STATE["objects"])


def all_gather_object(obj) -> list:
    dist = _dist()
    if not dist or dist.get_world_size() == 1:
        return [obj]
    out = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj, group=_STATE["objects"])
    return out


def broadcast_object(obj, src: int = 0):
    """Rank ``src``'s ``obj`` on every rank."""
    dist = _dist()
    if not dist or dist.get_world_size() == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src, group=_STATE["objects"])
    return box[0]


def _comm_device(t):
    import torch

    dist = _dist()
    return _STATE["device"] if dist and dist.get_backend() == "nccl" else torch.device("cpu")


def all_reduce_sum(t):
    """The element-wise sum over ranks of tensor ``t`` (returned on ``t``'s device)."""
    dist = _dist()
    if not dist or dist.get_world_size() == 1:
        return t
    buf = t.detach().to(_comm_device(t)).clone()
    dist.all_reduce(buf)
    return buf.to(t.device)


def share(n: int, r: int | None = None, w: int | None = None) -> slice:
    """Rank ``r``'s contiguous share of ``n`` items (sizes differ by at most one; ranks in order)."""
    r = rank() if r is None else r
    w = world() if w is None else w
    base, extra = divmod(n, w)
    start = r * base + min(r, extra)
    return slice(start, start + base + (1 if r < extra else 0))


def all_gather_shares(t, n: int):
    """The ``n`` rows whose :func:`share` each rank holds in ``t``, concatenated in rank order."""
    import torch

    dist = _dist()
    if not dist or dist.get_world_size() == 1:
        return t
    w = dist.get_world_size()
    sizes = [share(n, r, w).stop - share(n, r, w).start for r in range(w)]
    top = max(sizes)
    dev = _comm_device(t)
    padded = torch.zeros((top, *t.shape[1:]), dtype=t.dtype, device=dev)
    padded[:len(t)] = t.to(dev)
    parts = [torch.empty_like(padded) for _ in range(w)]
    dist.all_gather(parts, padded)
    return torch.cat([p[:s] for p, s in zip(parts, sizes)]).to(t.device)


# --------------------------------------------------------------------------- the model under DDP


def sync_batchnorm(model, device):
    """Make the BatchNorm layers of ``model`` normalise with the statistics of the *global* batch
    (over all ranks), so that N ranks train as one process does on the whole batch; return a
    function that undoes it (the caller gets its own module classes back, with the trained
    parameters and running statistics, which are the same tensors throughout).

    CUDA: PyTorch's ``SyncBatchNorm`` (timm's converter, which also handles timm's BatchNormAct).
    Elsewhere (``gloo`` on the CPU, which ``SyncBatchNorm`` refuses): :func:`_synced_forward`, the
    same computation with differentiable all-reduces.
    """
    import torch

    bn = torch.nn.modules.batchnorm._BatchNorm
    if device.type == "cuda":
        try:
            from timm.layers import convert_sync_batchnorm
        except ImportError:  # pragma: no cover - timm is a dependency
            convert_sync_batchnorm = torch.nn.SyncBatchNorm.convert_sync_batchnorm
        places = [(parent, name, child) for parent in model.modules() for name, child in parent.named_children()
                  if isinstance(child, bn) and not isinstance(child, torch.nn.SyncBatchNorm)]
        for parent, name, child in places:
            setattr(parent, name, convert_sync_batchnorm(child))

        def undo():
            for parent, name, child in places:
                setattr(parent, name, child)
        return undo
    swapped = [m for m in model.modules() if isinstance(m, bn) and not hasattr(type(m), "_gz_original")]
    for m in swapped:
        m.__class__ = _synced_class(type(m))

    def undo():
        for m in swapped:
            m.__class__ = type(m)._gz_original
    return undo


_SYNCED: dict = {}


def _synced_class(cls):
    if cls not in _SYNCED:
        _SYNCED[cls] = type(f"Synced{cls.__name__}", (cls,), {"forward": _synced_forward, "_gz_original": cls})
    return _SYNCED[cls]


def _all_reduce_autograd(t):
    """The sum over ranks of ``t``, differentiable: the gradient is summed over ranks too."""
    import torch
    import torch.distributed as dist

    class AllReduceSum(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            x = x.clone()
            dist.all_reduce(x)
            return x

        @staticmethod
        def backward(ctx, grad):
            grad = grad.clone()
            dist.all_reduce(grad)
            return grad

    return AllReduceSum.apply(t)


def _synced_forward(self, x):
    """BatchNorm (and timm's BatchNormAct: then dropout + activation) over the global batch:
    each rank's count, mean and sum of squared deviations are all-reduced (differentiably, so the
    backward pass all-reduces their gradients, as SyncBatchNorm's does) and merged exactly."""
    import torch

    orig = type(self)._gz_original
    dist = _dist()
    if not (self.training and dist and dist.get_world_size() > 1):
        return orig.forward(self, x)
    w, r = dist.get_world_size(), dist.get_rank()
    c = x.shape[1]
    dims = [0, *range(2, x.dim())]
    xf = x.float()
    n = xf.numel() // c
    mean = xf.mean(dims)
    m2 = ((xf - mean.view(1, c, *[1] * (x.dim() - 2))) ** 2).sum(dims)
    row = torch.cat([torch.full((1,), float(n), device=x.device), mean, m2])
    table = torch.zeros(w, 1 + 2 * c, device=x.device, dtype=row.dtype)
    table = table.index_copy(0, torch.tensor([r], device=x.device), row.unsqueeze(0))
    table = _all_reduce_autograd(table)  # every rank's row; the backward sums the gradients over ranks
    ns, means, m2s = table[:, :1], table[:, 1:1 + c], table[:, 1 + c:]
    total = ns.sum()
    gmean = (ns * means).sum(0) / total
    gvar = (m2s + ns * (means - gmean) ** 2).sum(0) / total
    if self.track_running_stats:
        with torch.no_grad():
            self.num_batches_tracked.add_(1)
            f = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
            self.running_mean.mul_(1 - f).add_(gmean.detach().to(self.running_mean.dtype), alpha=f)
            unbiased = gvar.detach() * (total / max(float(total) - 1, 1.0))
            self.running_var.mul_(1 - f).add_(unbiased.to(self.running_var.dtype), alpha=f)
    shape = (1, c, *[1] * (x.dim() - 2))
    y = (xf - gmean.view(shape)) * torch.rsqrt(gvar.view(shape) + self.eps)
    if self.affine:
        y = y * self.weight.view(shape) + self.bias.view(shape)
    y = y.to(x.dtype)
    if hasattr(self, "act") and hasattr(self, "drop"):  # timm.layers.BatchNormAct2d
        y = self.act(self.drop(y))
    return y


def wrap(model, device):
    """``model`` (already on ``device``) in ``DistributedDataParallel``."""
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


# --------------------------------------------------------------------------- resources of a rule


def rule_resources(processes: int, nodes: int = 1, device: str = "auto", key: str = "",
                   argv: list[str] | None = None, environ: dict | None = None) -> dict:
    """The Snakemake resources of a training rule run as ``processes`` ranks on ``nodes`` nodes.

    One process: ``gpu=1`` (none on the ``cpu`` device) and nothing else.  N processes: ``gpu=N``
    (one per rank), ``tasks=N``, ``tasks_per_gpu=1``, ``nodes`` and ``mpi="srun"`` -- what the
    Slurm executor turns into one ``sbatch --gpus=N --ntasks-per-gpu=1 [--nodes=K]`` whose script
    runs once (see the module docstring); on the ``cpu`` device no GPUs (``sbatch --ntasks=N``).
    Unused keys are ``None``, which Snakemake drops.  A local run (no cluster executor) that asks for
    more GPUs than the machine shows, or for more than one node, is one :class:`InputError` here,
    when the DAG is built; with no GPU at all the N processes share the CPU (``gloo``) and count as
    one ``gpu`` job, as every GPU rule does there.
    """
    from .gpu import LOCAL_EXECUTORS, job_gpus, run_executor, visible_gpus

    where = f"{key}." if key else ""
    processes, nodes = int(processes), int(nodes)
    if processes < 1 or nodes < 1 or nodes > processes:
        raise InputError(f"{where}processes ({processes}) and {where}nodes ({nodes}) must be >= 1, "
                         "with at least one process per node")
    none = {"tasks": None, "tasks_per_gpu": None, "nodes": None, "mpi": None}
    if processes == 1:
        return {"gpu": job_gpus(device), **none}
    local = run_executor(argv, environ) in LOCAL_EXECUTORS
    if local and nodes > 1:
        raise InputError(f"{where}nodes: {nodes} nodes need a cluster executor (e.g. --profile "
                         "profiles/slurm); a local run uses this machine only")
    if not job_gpus(device):  # the ranks share the CPUs: no GPU asked for, one Slurm task each
        return {"gpu": 0, "tasks": processes, "tasks_per_gpu": None, "nodes": nodes, "mpi": "srun"}
    gpus = processes
    if local:
        visible = visible_gpus(environ)
        if 0 < len(visible) < processes:
            raise InputError(f"{where}processes: {processes} training processes need one GPU each, but "
                             f"this machine shows {len(visible)} (GPU {','.join(visible)}); lower "
                             f"{where}processes or run on a cluster")
        if not visible:
            gpus = 1
    return {"gpu": gpus, "tasks": processes, "tasks_per_gpu": 1, "nodes": nodes, "mpi": "srun"}


# --------------------------------------------------------------------------- launching the ranks


def check_local_gpus(processes: int, device: str = "auto", environ: dict | None = None) -> list[str]:
    """The GPUs ``processes`` local ranks will use (empty: the CPU); one :class:`InputError` when
    they would need more GPUs than are visible."""
    from .gpu import visible_gpus

    visible = visible_gpus(environ)
    want = (device or "auto").split(":")[0]
    if want == "cpu" or (want == "auto" and not visible):
        return []
    if len(visible) < processes:
        shown = f"{len(visible)} (CUDA_VISIBLE_DEVICES={','.join(visible)})" if visible else "none"
        raise InputError(f"{processes} training processes need one GPU each (device {device!r}), but the "
                         f"visible GPUs are {shown}")
    return visible[:processes]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("", 0))
        return s.getsockname()[1]


def _jsonable(obj):
    if hasattr(obj, "item") and callable(obj.item):
        return obj.item()
    if hasattr(obj, "tolist") and callable(obj.tolist):
        return obj.tolist()
    if isinstance(obj, (Path, os.PathLike)):
        return str(obj)
    if isinstance(obj, (set, tuple)):
        return list(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


#: the working folder of one launch (spec, errors, result), beside the rule's outputs
SPOOL_PREFIX = ".gzmorph-ddp-"


def sweep_spools(spool: str | Path | None) -> list[Path]:
    """Remove the working folders that killed launches left in ``spool`` (the rule's output folder,
    where one job runs at a time; a SIGKILL or a Slurm time-out skips launch's own clean-up)."""
    if spool is None:
        return []
    old = sorted(p for p in Path(spool).glob(f"{SPOOL_PREFIX}*") if p.is_dir() and not p.is_symlink())
    for p in old:
        shutil.rmtree(p, ignore_errors=True)
        log.info("removed %s, left by a killed training job", p)
    return old


def launch(fn, kwargs: dict, processes: int = 1, *, nodes: int = 1, device: str = "auto", gpus: int = 0,
           threads: int | None = None, spool: str | Path | None = None, stream=None):
    """``fn(**kwargs)`` as one job of ``processes`` data-parallel ranks; rank 0's return value.

    One process (or when already inside a job): called here.  Otherwise the ranks are started with
    ``srun`` inside a Slurm allocation and with ``torchrun`` elsewhere (module docstring), each
    with ``threads`` CPU threads (default: this process's share of ``OMP_NUM_THREADS``), and
    ``gpus`` (the rule's ``gpu`` resource) > 0 asks Slurm for one GPU per task.  ``fn`` must be a
    module-level function and ``kwargs`` JSON (paths, numbers, dicts); ``spool`` is a folder that
    every node sees (default: the temporary folder, enough for one node).  The ranks' output goes
    to ``stream`` (default ``sys.stderr``: the rule's log).  A failed rank raises its error here.
    """
    processes, nodes = int(processes), int(nodes)
    if processes < 1 or nodes < 1 or nodes > processes:
        raise InputError(f"processes ({processes}) and nodes ({nodes}) must be >= 1, with at least one "
                         "process per node")
    if processes == 1 or env_world() is not None:
        return fn(**kwargs)
    module, name = fn.__module__, fn.__qualname__
    if module == "__main__" or "<" in name:
        raise ValueError(f"launch needs a module-level function of an importable module, not {module}.{name}")
    slurm = bool(os.environ.get("SLURM_JOB_ID")) and shutil.which("srun") is not None
    if not slurm:
        if nodes > 1:
            raise InputError(f"{nodes} nodes need a Slurm allocation (run the workflow with --profile "
                             "profiles/slurm); here all processes run on this machine")
        chosen = check_local_gpus(processes, device)
        log.info("starting %d training processes on this machine with torchrun (%s)", processes,
                 f"GPU {','.join(chosen)}" if chosen else "CPU, gloo")
    else:
        log.info("starting %d training processes on %d node(s) with srun in Slurm job %s", processes, nodes,
                 os.environ["SLURM_JOB_ID"])
    if threads is None:  # Slurm: the CPUs of a task; here: this process's share of its threads
        threads = int(os.environ.get("SLURM_CPUS_PER_TASK") or os.environ.get("OMP_NUM_THREADS") or 1) if slurm \
            else max(1, int(os.environ.get("OMP_NUM_THREADS") or os.cpu_count() or 1) // processes)
    stream = stream or sys.stderr
    sweep_spools(spool)
    folder = Path(tempfile.mkdtemp(prefix=SPOOL_PREFIX, dir=spool))
    try:
        spec = {"target": f"{module}:{name}", "kwargs": kwargs, "device": device, "threads": int(threads),
                "spool": str(folder)}
        (folder / "spec.json").write_text(json.dumps(spec, default=_jsonable))
        env = {**os.environ, ENV_MARK: "srun" if slurm else "torchrun", "OMP_NUM_THREADS": str(threads),
               "PYTHONUNBUFFERED": "1"}
        worker = [sys.executable, "-m", "gzmorph.distributed", str(folder / "spec.json")]
        if slurm:
            env.update(MASTER_ADDR=socket.gethostname(), MASTER_PORT=str(_free_port()))
            cmd = ["srun", f"--ntasks={processes}", f"--nodes={nodes}", f"--cpus-per-task={threads}", "--mem=0",
                   "--kill-on-bad-exit=1", "--export=ALL", *(["--gpus-per-task=1"] if gpus else []), *worker]
        else:
            cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}",
                   "--no-python", *worker]
        rc, tail = _run(cmd, env, stream)
        if rc != 0:
            raise _failure(folder, rc, tail, processes, "srun" if slurm else "torchrun")
        result = folder / "result.json"
        return json.loads(result.read_text()) if result.exists() else None
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _run(cmd: list[str], env: dict, stream) -> tuple[int, str]:
    """Run ``cmd``, copying its output to ``stream``; its exit status and last lines."""
    tail: deque = deque(maxlen=200)
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            errors="replace")
    try:
        for line in proc.stdout:
            tail.append(line)
            stream.write(line)
        stream.flush()
        return proc.wait(), "".join(tail)
    except BaseException:  # interrupted (Snakemake stops the job): stop the ranks too
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        raise


def _how(code: int) -> str:
    """A process's exit status in words."""
    if code >= 0:
        return f"exit code {code}"
    try:
        return f"killed by {signal.Signals(-code).name}"
    except ValueError:
        return f"killed by signal {-code}"


def _failed_ranks(tail: str) -> dict[int, str]:
    """The ranks that failed of their own accord, as the launcher reports them, and how; the
    launcher's first observed failure first.

    torchrun: the ranks of its "Root Cause" and "Failures" blocks, less those stopped from outside:
    by torchrun itself after the first failure (its "Sending process <pid> closing signal" lines:
    SIGTERM, then SIGKILL 30 s later for a rank stuck in a collective) or by any other SIGTERM.
    srun: the rank of its first "task(s) N: ..." line, the bad exit that --kill-on-bad-exit acts on
    (the tasks it stops afterwards follow, "Terminated" or "Killed"); a job cancelled from outside
    ("Terminated" first) names none."""
    start = tail.rfind("Failures:")
    if start >= 0:
        stopped = set(re.findall(r"Sending process (\d+) closing signal", tail))
        report = tail[start:]
        root = report.find("Root Cause")
        failed: dict[int, str] = {}
        for part in (report[root:], report[:root]) if root >= 0 else (report,):
            for m in re.finditer(r"rank\s*:\s*(\d+).*?exitcode\s*:\s*(-?\d+)\s*\(pid:\s*(\d+)\)", part, re.DOTALL):
                if m.group(3) not in stopped and int(m.group(2)) != -signal.SIGTERM:
                    failed.setdefault(int(m.group(1)), _how(int(m.group(2))))
        return failed
    m = re.search(r"^srun: error: [^:\n]+: tasks? (\d+)[\d,-]*: ([^\n]+)$", tail, re.MULTILINE)
    if m is None or m.group(2).strip() == "Terminated":
        return {}
    return {int(m.group(1)): m.group(2).strip()}


def _failure(folder: Path, rc: int, tail: str, processes: int, launcher: str) -> Exception:
    """The error of a failed job: which rank died without an error and how, else the failing
    rank's own error.

    A rank that fails first takes the others down with it: they fail in a collective whose peer is
    gone, and their errors only say so.  A rank the launcher saw fail without a record of its own
    (killed, out of memory, crashed) is the cause before any.  Otherwise srun's first failed task
    is the cause when it wrote a record (the ranks' clocks may differ across nodes); torchrun's
    "first observed failure" cannot be trusted there (it stamps failures to the whole second and
    breaks ties by rank), so on one node the earliest record, by the time each rank wrote, decides."""
    errors = {}
    for f in folder.glob("error.*.json"):
        try:
            e = json.loads(f.read_text())
        except (OSError, ValueError):
            continue
        errors[int(e["rank"])] = e
    failed = _failed_ranks(tail)
    died = [(r, how) for r, how in failed.items() if r not in errors]
    if died:
        r, how = died[0]
        return DistributedError(f"training process rank {r} of {processes} died without an error "
                                f"({how}: a kill, the out-of-memory killer or a crash); {launcher} stopped "
                                "the other processes; a rerun resumes from the last checkpoint")
    if not errors:
        said = [ln.strip() for ln in tail.splitlines() if ln.startswith(("srun: error:", "torch.distributed"))]
        return DistributedError(f"the {processes} training processes failed ({launcher} exit status {rc}"
                                + (f": {said[-1]}" if said else "") + "); their output is in the log")
    first = next((errors[r] for r in failed if r in errors), None) if launcher == "srun" else None
    first = first or min(errors.values(), key=lambda e: e["time"])
    where = f"training process rank {first['rank']} of {processes} (on {first['host']})"
    if first.get("input_error"):
        return InputError(f"{where}: {first['message']}")
    return DistributedError(f"{where} failed: {first['type']}: {first['message']}")


def _worker(spec_path: str) -> int:
    """One rank: run the spec's function; rank 0 writes its result, a failing rank its error."""
    import importlib

    spec = json.loads(Path(spec_path).read_text())
    folder = Path(spec["spool"])
    w = env_world()
    r = w.rank if w else 0
    logging.basicConfig(stream=sys.stderr, level=logging.INFO if r == 0 else logging.WARNING, force=True,
                        format=f"%(asctime)s %(levelname)s [rank {r}] %(name)s: %(message)s")
    logging.captureWarnings(True)
    try:
        import torch  # noqa: F401 - set_threads applies to torch only once it is imported

        from .smk import set_threads

        set_threads(spec.get("threads") or 1)
        init(spec.get("device"))
        module, _, name = spec["target"].partition(":")
        fn = importlib.import_module(module)
        for part in name.split("."):
            fn = getattr(fn, part)
        result = fn(**spec["kwargs"])
        if r == 0:
            tmp = folder / f".result.{os.getpid()}"
            tmp.write_text(json.dumps(result, default=_jsonable))
            tmp.replace(folder / "result.json")
        barrier()
        return 0
    except BaseException as err:  # noqa: BLE001 - reported to the launcher, then exit non-zero
        import traceback

        failed_at = time.time()  # before the traceback: the earliest record names the failing rank
        traceback.print_exc(file=sys.stderr)
        record = {"rank": r, "host": socket.gethostname(), "type": type(err).__name__, "message": one_line(err),
                  "input_error": isinstance(err, InputError), "time": failed_at}
        try:
            (folder / f"error.{r}.json").write_text(json.dumps(record))
        except OSError:
            pass
        return 1
    finally:
        dist = _dist()
        if dist:
            with contextlib.suppress(Exception):  # a broken group cannot be closed cleanly
                dist.destroy_process_group()


if __name__ == "__main__":  # run as gzmorph.distributed itself, so that fit sees the same process group state
    from gzmorph.distributed import _worker as _main

    raise SystemExit(_main(sys.argv[1]))
