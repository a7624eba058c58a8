"""Shared by the end-to-end tests: a fresh copy of the workflow to run the real snakemake in."""

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
