"""Glue between Snakemake ``script:`` rules and the library.

Every script in ``workflow/scripts`` is a few lines::

    from gzmorph.smk import rule_context
    with rule_context(snakemake) as (params, log):
        curate(..., **params)

``rule_context`` sends stderr (and tqdm progress, Python warnings, logging) to
the rule's log file, limits torch/BLAS threads to the rule's ``threads``, seeds
the global RNGs from ``config["seed"]``, gives a rule with ``resources: gpu=N`` its own
GPU(s) in a local run (``gzmorph.gpu``: a lock-file slot per device and
``CUDA_VISIBLE_DEVICES`` set before torch touches CUDA; left to Slurm inside a Slurm
job; the CPU when no GPU is visible), sets up the allocator of a rule with a
``keep_freed_memory`` param (:mod:`gzmorph.allocator`, before torch is imported) and turns an
``InputError`` into one clear line in the log and a non-zero exit.  First it removes the temporary files that a job of the same
rule killed outright (SIGKILL, out of memory, a lost node) left beside the rule's outputs
(``.<output name>.<random>.tmp``, :func:`gzmorph.io.sweep_temporaries`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import sys
import traceback

from .allocator import keep_freed_memory
from .io import InputError, sweep_temporaries


def set_threads(n: int) -> None:
    """Limit torch and the BLAS/OpenMP libraries to ``n`` threads: through the environment for those
    not loaded yet, and through threadpoolctl for those already loaded (numpy's OpenBLAS, once a
    script has imported pandas), which read the environment only when they load."""
    from threadpoolctl import threadpool_limits

    n = max(1, int(n))
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(n)
    threadpool_limits(limits=n)
    if "torch" in sys.modules:
        import torch

        torch.set_num_threads(n)


def seed_everything(seed: int) -> None:
    import numpy as np

    random.seed(seed)
    np.random.seed(seed % 2**32)
    if "torch" in sys.modules:
        import torch

        torch.manual_seed(seed)


def rule_gpus(snakemake) -> int:
    """The rule's ``resources.gpu`` (0 when it has none)."""
    try:
        return int(getattr(snakemake.resources, "gpu", 0) or 0)
    except (TypeError, ValueError):
        return 0


def sweep_outputs(snakemake, logger: logging.Logger | None = None) -> list:
    """Remove the leftover temporary files of atomic writes beside each of the rule's outputs."""
    try:
        removed = sweep_temporaries(str(p) for p in getattr(snakemake, "output", ()))
    except OSError as err:  # a sweep never stops the rule
        if logger:
            logger.warning("could not remove leftover temporary files: %s", err)
        return []
    for path in removed:
        if logger:
            logger.info("removed %s, left by a killed job", path)
    return removed


def rule_params(snakemake) -> dict:
    """The rule's params as one flat dict: the settings that ``named()`` (common.smk) keeps in one
    ``named`` param, then the others (wildcard lambdas)."""
    params = dict(snakemake.params.items())
    return {**params.pop("named", {}), **params}


#: where the libraries a rule loads keep their caches (matplotlib's font list, torch.compile's and
#: Triton's kernels), each in a folder of this name under ``results/<dataset>/.cache/``
LIBRARY_CACHES = {"MPLCONFIGDIR": "matplotlib", "TORCHINDUCTOR_CACHE_DIR": "torchinductor",
                  "TRITON_CACHE_DIR": "triton"}


def library_cache_env(log_path: str | None, environ=os.environ) -> dict[str, str]:
    """The cache variables to set for a rule whose log is ``results/<dataset>/logs/<rule>.log``:
    folders beside ``logs/`` (nothing is written outside ``results/``), except those the user set."""
    if not log_path:
        return {}
    root = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(log_path))), ".cache")
    return {var: os.path.join(root, name) for var, name in LIBRARY_CACHES.items() if not environ.get(var)}


@contextlib.contextmanager
def rule_context(snakemake):
    """Run a rule body with its log, threads and seed set up; exit non-zero on failure."""
    log_path = snakemake.log[0] if len(snakemake.log) else None
    log_file = open(log_path, "w", buffering=1) if log_path else sys.stderr
    old_stderr = sys.stderr
    sys.stderr = log_file
    logging.basicConfig(stream=log_file, level=logging.INFO, force=True,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.captureWarnings(True)
    gpu_claim = None
    logger = logging.getLogger(f"gzmorph.{snakemake.rule}")
    caches = library_cache_env(log_path)
    os.environ.update(caches)  # before the script imports matplotlib or torch
    try:
        sweep_outputs(snakemake, logger)
        n_gpus = rule_gpus(snakemake)
        if n_gpus > 0:  # a GPU rule of a local run gets its own device (gzmorph.gpu), before CUDA starts
            from .gpu import acquire_gpus

            gpu_claim = acquire_gpus(n_gpus, logger=logger)
            logger.info("rule %s: %s", snakemake.rule, gpu_claim.describe())
        params = rule_params(snakemake)
        if "keep_freed_memory" in params:  # before torch is imported: it reads its huge-page switch once
            logger.info("allocator: %s", keep_freed_memory() if params["keep_freed_memory"]
                        else "glibc's own (keep_freed_memory: false)")
        set_threads(snakemake.threads)
        if "seed" in snakemake.config:  # config.yaml's (the schema requires it); another Snakefile may have none
            seed_everything(int(snakemake.config["seed"]))
        yield params, logger
    except InputError as err:
        logger.error("%s", err)
        sys.stderr = old_stderr
        sys.stderr.write(f"gzmorph: rule {snakemake.rule}: {err}\n")  # the one line on the console
        sys.exit(1)
    except BaseException:
        traceback.print_exc(file=log_file)
        raise
    finally:
        if gpu_claim is not None:
            gpu_claim.release()
        for var in caches:
            os.environ.pop(var, None)
        sys.stderr = old_stderr
        if log_file is not sys.stderr:
            log_file.close()
