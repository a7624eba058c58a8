"""Apply a trained classifier to every galaxy of another catalogue (the ``classify_catalogue`` rule).

Images are preprocessed as the curation stage does; the classifier itself is :mod:`gzmorph.classify`.
Kept apart from it so that training a classifier does not depend on the source readers.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .classify import as_classifier, predict_images
from .io import atomic_path


def classify_source(model, source: str, data_dir: str | Path, out: str | Path, *, crop_fraction: float | None = None,
                    workers: int | None = None, max_bad_image_fraction: float = 0.01, batch_size: int = 256,
                    device=None, **source_options) -> pd.DataFrame:
    """Apply ``model`` to every galaxy of a source catalogue (``gzmorph.sources.read_source``);
    images are preprocessed like the curation stage; unreadable images are dropped (up to
    ``max_bad_image_fraction``, else an error) and listed in the ``bad_images`` metadata."""
    from .preprocess import apply_bad_image_policy, preprocess_images
    from .sources import read_source

    clf = as_classifier(model, device)
    cat = read_source(source, data_dir, **source_options)
    crop = crop_fraction if crop_fraction is not None else clf.bundle.get("preprocess", {}).get("crop_fraction", 0.5)
    imgs, bad = preprocess_images(cat["image_path"].tolist(), clf.image_size, crop, workers)
    apply_bad_image_policy(bad, len(cat), max_bad_image_fraction, where=f"{source} {data_dir}: ")
    keep = np.ones(len(cat), bool)
    keep[[i for i, _ in bad]] = False
    pred = predict_images(clf, imgs[keep], cat["id"].to_numpy()[keep], batch_size, where=str(data_dir))
    pred.insert(1, "image_path", cat["image_path"].to_numpy()[keep])
    with atomic_path(out) as tmp:
        pred.to_parquet(tmp, index=False)
    return pred
