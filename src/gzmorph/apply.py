"""Apply a trained classifier to every galaxy of another catalogue (the ``classify_catalogue`` rule).

The workflow reads the catalogue into a source table first (``apply_source_table``, with its own
image manifest).  Images are preprocessed as the curation stage does, and streamed: decoded a block
at a time, classified ``batch_size`` at a time and written as they come, so memory does not grow
with the catalogue beyond its table of ids and paths.  The classifier itself is :mod:`gzmorph.classify`.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from .classify import as_classifier, predict_images
from .io import parquet_stream

log = logging.getLogger(__name__)


def classify_table(model, table: str | Path | pd.DataFrame, out: str | Path, *, crop_fraction: float | None = None,
                   workers: int | None = None, max_bad_image_fraction: float = 0.01, batch_size: int = 256,
                   max_pixels: int | None = None, device=None, where: str = "", progress: bool = True,
                   ) -> dict:
    """Apply ``model`` to every galaxy of a source table (``id``, ``image_path``; a Parquet file or
    a frame) and write ``out``: ``id``, ``image_path``, the prediction and one probability per class.
    Returns ``{"galaxies": n, "predicted": {class: count}}``.

    Images are decoded block by block, classified ``batch_size`` at a time and written as they come
    (the file appears when all are done).  Unreadable ones are dropped, up to
    ``max_bad_image_fraction`` of the table (else an error, as soon as that many are seen), and
    listed in the log; nothing is written then.
    """
    from .preprocess import DEFAULT_CROP_FRACTION, DEFAULT_MAX_IMAGE_PIXELS, apply_bad_image_policy, preprocess_stream

    clf = as_classifier(model, device)
    cat = table if isinstance(table, pd.DataFrame) else pd.read_parquet(table, columns=["id", "image_path"])
    where = where or str(table if not isinstance(table, pd.DataFrame) else "the catalogue")
    trained_crop = clf.bundle.get("preprocess", {}).get("crop_fraction", DEFAULT_CROP_FRACTION)
    crop = crop_fraction if crop_fraction is not None else trained_crop
    ids, paths = cat["id"].to_numpy(), cat["image_path"].astype(str).to_numpy()
    bad, counts = [], {}
    pending: list[tuple[np.ndarray, np.ndarray]] = []  # (rows, images) decoded, not yet classified

    with parquet_stream(out) as write:
        def classify_pending():
            rows = np.concatenate([r for r, _ in pending])
            pred = predict_images(clf, np.concatenate([b for _, b in pending]), ids[rows], batch_size, where=where)
            pred.insert(1, "image_path", paths[rows])
            write(pred)
            for name, n in pred["pred_name"].value_counts(sort=False).items():
                counts[name] = counts.get(name, 0) + int(n)
            pending.clear()

        stream = preprocess_stream(paths.tolist(), clf.image_size, crop, workers, progress=progress,
                                   max_pixels=max_pixels or DEFAULT_MAX_IMAGE_PIXELS)
        written = False
        for start, block, block_bad in stream:
            bad.extend(block_bad)
            apply_bad_image_policy(bad, len(cat), max_bad_image_fraction, where=f"{where}: ")
            keep = np.ones(len(block), bool)
            keep[[i - start for i, _ in block_bad]] = False
            pending.append((start + np.flatnonzero(keep), block[keep]))
            if sum(len(r) for r, _ in pending) >= batch_size:
                classify_pending()
                written = True
        if pending or not written:  # the rest; for an empty table, its columns with no rows
            pending.append((np.zeros(0, np.int64), np.zeros((0, clf.image_size, clf.image_size, 3), np.uint8)))
            classify_pending()
    if bad:
        log.warning("%d unreadable image(s) skipped (max_bad_image_fraction %s): %s%s", len(bad),
                    max_bad_image_fraction, "; ".join(m for _, m in bad[:5]), " ..." if len(bad) > 5 else "")
    return {"galaxies": sum(counts.values()), "predicted": counts}
