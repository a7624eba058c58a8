"""The assembled report in headless Chromium: every image loads; screenshot to test-artifacts/."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from browser import check_page
from gzmorph.report import (
    ORDER, Section, assemble, curation_section, figure, image_grid, metrics, new_figure, paragraph,
    style_axes, table, write_fragment,
)
from test_report import CLASSES, curation_stats, galaxy_images, synthetic_catalogue

pytestmark = pytest.mark.browser

_GOOD_PNG = ("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==")


def _classification_section() -> Section:
    rng = np.random.default_rng(1)
    sec = Section("Classification", anchor="classification", order=ORDER["classification"],
                  summary="HIWL classifier on the test split")
    cm = rng.integers(0, 30, size=(len(CLASSES), len(CLASSES))) + np.diag(rng.integers(60, 120, len(CLASSES)))
    fig = new_figure((5.2, 4.4))
    ax = fig.add_subplot()
    im = ax.imshow(cm / cm.sum(1, keepdims=True), cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(CLASSES)), CLASSES, rotation=40, ha="right")
    ax.set_yticks(range(len(CLASSES)), CLASSES)
    ax.set_xlabel("predicted")
    ax.set_ylabel("label")
    fig.colorbar(im, ax=ax, shrink=0.8)
    fig2 = new_figure((5.2, 3.0))
    ax2 = fig2.add_subplot()
    ep = np.arange(1, 31)
    ax2.plot(ep, 1.6 * np.exp(-ep / 8) + 0.3, label="train")
    ax2.plot(ep, 1.6 * np.exp(-ep / 9) + 0.42, label="val")
    ax2.set_xlabel("epoch")
    ax2.set_ylabel("loss")
    ax2.legend(frameon=False)
    style_axes(ax2)
    acc = np.diag(cm) / cm.sum(1)
    sec.add(paragraph("A stand-in section, as a later stage would write it."),
            metrics({"accuracy": 0.8312, "macro F1": 0.7954, "test galaxies": int(cm.sum())}),
            figure(fig, "Row-normalised confusion matrix on the test split."),
            figure(fig2, "Training and validation loss."),
            table([{"class": c, "recall": a, "support": int(n)} for c, a, n in zip(CLASSES, acc, cm.sum(1))],
                  caption="Per-class recall."),
            image_grid(galaxy_images(12, size=24, seed=3), [f"{i}" for i in range(12)], ncols=12,
                       caption="Most confidently misclassified galaxies."))
    return sec


def test_report_renders_in_chromium(tmp_path):
    df = synthetic_catalogue(240)
    images = galaxy_images(len(df), size=48)
    cur = curation_section(df, (df["id"].to_numpy(), images), CLASSES, curation_stats(df))
    frags = [write_fragment(_classification_section(), tmp_path / "fragments" / "classification.html"),
             write_fragment(cur, tmp_path / "fragments" / "curation.html")]
    out = assemble(frags, tmp_path / "report" / "index.html", title="gzmorph report",
                   meta={"dataset": "synthetic-demo",
                         "config": {"cut": "hiwl5", "seed": 0, "image_size": 48, "train": {"epochs": 30}}})
    n_img_tags = out.read_text().count("<img")

    res = check_page(out, "report-curation")

    assert res.n_images == n_img_tags > 0
    assert res.failures == [] and res.n_loaded == res.n_images
    assert res.external_requests in (None, [])
    assert res.console_errors == []
    assert res.title.startswith("gzmorph report")
    assert res.screenshot.is_file()
    with Image.open(res.screenshot) as shot:
        assert shot.format == "PNG" and shot.width >= 1000 and shot.height >= res.page_height * 0.9


@pytest.mark.parametrize("route", ["playwright", "raw"])
def test_helper_detects_broken_images(tmp_path, route):
    if route == "playwright":
        pytest.importorskip("playwright.sync_api")
    page = tmp_path / "broken.html"
    page.write_text('<!DOCTYPE html><html><head><title>broken</title></head><body>'
                    f'<img alt="good" src="data:image/png;base64,{_GOOD_PNG}">'
                    '<img alt="broken" src="data:image/png;base64,AAAA"></body></html>')
    res = check_page(page, f"broken-image-{route}", route=route, screenshot=False)
    assert res.route == route
    assert res.n_images == 2 and res.n_loaded == 1
    assert len(res.failures) == 1 and res.failures[0].startswith("broken")
