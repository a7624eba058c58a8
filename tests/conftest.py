"""Shared fixtures: paths to the real Galaxy Zoo samples (skipped, with the reason, when absent)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("GZMORPH_SHARED_DATA", REPO.parent / "shared" / "data"))


def _real(sub: str, marker_file: str) -> Path:
    path = SHARED_DATA / sub
    if not (path / marker_file).exists():
        pytest.skip(f"real sample {path} not present (set GZMORPH_SHARED_DATA to ../shared/data)")
    return path


@pytest.fixture(scope="session")
def kaggle_dir() -> Path:
    """The real Kaggle sample: training_solutions_rev1.csv + images_training_rev1/."""
    return _real("gz-kaggle-dev", "training_solutions_rev1.csv")


@pytest.fixture(scope="session")
def gz2_dir() -> Path:
    """The real GZ2 sample: gz2_hart16_subset.csv + images/."""
    return _real("gz2-hart16-dev", "gz2_hart16_subset.csv")


@pytest.fixture
def tiny_kaggle(tmp_path, kaggle_dir) -> Path:
    """A writable copy of 60 real Kaggle rows and their images, for bad-input tests."""
    import shutil

    out = tmp_path / "kaggle"
    (out / "images_training_rev1").mkdir(parents=True)
    lines = (kaggle_dir / "training_solutions_rev1.csv").read_text().splitlines()[:61]
    (out / "training_solutions_rev1.csv").write_text("\n".join(lines) + "\n")
    for line in lines[1:]:
        gid = line.split(",", 1)[0]
        shutil.copy(kaggle_dir / "images_training_rev1" / f"{gid}.jpg", out / "images_training_rev1")
    return out
