"""Shared by the end-to-end tests: a fresh copy of the workflow to run the real snakemake in."""

import os
import shutil
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def copy_workflow(dest: Path) -> Path:
    """The workflow files (and the library the rules declare as code) in a fresh folder."""
    dest.mkdir(parents=True, exist_ok=True)
    for item in ("Snakefile", "config.yaml", "workflow", "profiles", "envs", "src"):
        src = REPO / item
        (shutil.copytree if src.is_dir() else shutil.copy)(src, dest / item)
    return dest


def own_library(env: dict, workdir: Path) -> dict:
    """``env`` with the copy's own ``src/`` first on PYTHONPATH: its jobs run the code its rules
    declare (the workflow stops when the gzmorph Python imports differs from its src/)."""
    path = os.pathsep.join(p for p in (str(workdir / "src"), env.get("PYTHONPATH", "")) if p)
    return {**env, "PYTHONPATH": path}
