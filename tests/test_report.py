"""Report builder and curation section (fast; no browser)."""

from __future__ import annotations

import base64
import io
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from gzmorph.io import InputError
from gzmorph.report import (
    ORDER, Section, assemble, curation_section, figure, image_grid, metrics, new_figure, paragraph,
    read_fragment, table, write_fragment,
)
from gzmorph.report import page as rpage
from gzmorph.report.curation import counts_table

CLASSES = ["smooth_round", "smooth_cigar", "edge_on", "spiral", "barred_spiral", "merger"]
_URL_ATTR = re.compile(r"""\b(src|href|srcset|poster|action|data)\s*=\s*["']([^"']*)["']""", re.I)
_DATA_URI = re.compile(r"""src=["']data:(image/[a-z]+);base64,([A-Za-z0-9+/=]*)["']""")


# ----------------------------------------------------------------------------- synthetic data


def galaxy_images(n: int, size: int = 32, seed: int = 0) -> np.ndarray:
    """Blobby galaxy-like uint8 N×size×size×3 images (random ellipses with noise)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(float) - (size - 1) / 2
    out = np.empty((n, size, size, 3), np.uint8)
    for i in range(n):
        ang, q, r = rng.uniform(0, np.pi), rng.uniform(0.25, 1), rng.uniform(size / 10, size / 4)
        u = xx * np.cos(ang) + yy * np.sin(ang)
        v = -xx * np.sin(ang) + yy * np.cos(ang)
        prof = np.exp(-np.sqrt(u**2 + (v / q) ** 2) / r * 1.7)
        arms = 1 + 0.35 * rng.uniform() * np.cos(2 * np.arctan2(v, u) + np.sqrt(u**2 + v**2) / 2)
        colour = np.array([1.0, 0.85 + 0.1 * rng.uniform(), 0.65 + 0.3 * rng.uniform()])
        img = prof[..., None] * arms[..., None] * colour + rng.normal(0, 0.03, (size, size, 3))
        out[i] = np.clip(img * 255, 0, 255).astype(np.uint8)
    return out


def synthetic_catalogue(n: int = 150, seed: int = 0, truth: bool = True) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    label = rng.choice(len(CLASSES), size=n, p=[0.3, 0.15, 0.1, 0.25, 0.15, 0.05])
    df = pd.DataFrame({
        "id": np.arange(1000, 1000 + n, dtype=np.int64),
        "label": label.astype(int),
        "label_name": [CLASSES[k] for k in label],
        "confidence": rng.beta(5, 2, size=n),
        "split": rng.choice(["train", "val", "test"], size=n, p=[0.7, 0.15, 0.15]),
    })
    for j in range(37):
        df[f"Class{j // 4 + 1}.{j % 4 + 1}"] = rng.uniform(size=n)
    df["image_path"] = [f"images/{i}.jpg" for i in df["id"]]
    if truth:
        wrong = rng.uniform(size=n) < 0.2
        true = np.where(wrong, rng.integers(-1, len(CLASSES), size=n), label)
        df["true_label"] = true.astype(int)
        df["true_morphology"] = [("none" if t < 0 else CLASSES[t].split("_")[0]) for t in true]
    return df


def curation_stats(df: pd.DataFrame) -> dict:
    return {
        "n_source": len(df) + 63, "n_selected": len(df), "n_ambiguous": 60, "n_corrupt_images": 3,
        "corrupt_ids": [17, 42, 99], "cut": "hiwl5",
        "cut_description": {c: f"p({c}) > 0.5 and `n_votes` >= 10" for c in CLASSES},
        "truth_match": None, "per_class": {c: {"selected": int((df.label == k).sum()), "threshold": 0.5}
                                          for k, c in enumerate(CLASSES)},
        "seed": 7,
    }


def assert_self_contained(text: str) -> None:
    for attr, url in _URL_ATTR.findall(text):
        assert url.startswith(("data:", "#")), f"external {attr}={url[:80]!r}"
    assert "<link" not in text.lower()
    assert not re.search(r"<script\b", text, re.I)
    assert not re.search(r"url\(\s*['\"]?(?!data:)", text), "CSS url() to an external resource"
    assert "@import" not in text


def decode_images(text: str) -> list[Image.Image]:
    images = []
    for mime, payload in _DATA_URI.findall(text):
        im = Image.open(io.BytesIO(base64.b64decode(payload, validate=True)))
        im.load()
        assert im.format == {"image/png": "PNG", "image/jpeg": "JPEG"}[mime]
        assert im.width > 0 and im.height > 0
        images.append(im)
    return images


def _bar_figure():
    fig = new_figure((4, 2.5))
    ax = fig.add_subplot()
    ax.bar(["a", "b", "c"], [3, 5, 2])
    return fig


# ----------------------------------------------------------------------------- fragments


def test_fragment_round_trip(tmp_path):
    sec = Section("Distillation -- trajectories <α>", anchor="distillation", order=ORDER["distillation"],
                  summary="teacher → student")
    sec.add(paragraph("Loss `kl` fell.\n\nSecond <b>paragraph</b>."), metrics({"epochs": 12000, "loss": 0.01234}))
    path = write_fragment(sec, tmp_path / "frag" / "distillation.html")
    frag = read_fragment(path)
    assert (frag.title, frag.anchor, frag.order, frag.summary) == (sec.title, "distillation", 30, "teacher → student")
    assert frag.html == sec.render()
    first = path.read_text().splitlines()[0]
    assert first.startswith("<!-- gzmorph-section ") and "--" not in first[4:-3]
    assert "&lt;b&gt;paragraph&lt;/b&gt;" in frag.html and "<code>kl</code>" in frag.html
    assert "12,000" in frag.html and "0.012" in frag.html


def test_read_fragment_rejects_other_files(tmp_path):
    bad = tmp_path / "x.html"
    bad.write_text("<section>hand-written</section>")
    with pytest.raises(InputError, match="not a gzmorph report fragment"):
        read_fragment(bad)


def test_section_anchor_validated():
    assert Section("Curation & cuts").anchor == "curation-cuts"
    with pytest.raises(ValueError, match="anchor"):
        Section("x", anchor="has space")
    with pytest.raises(TypeError):
        Section("x", blocks=["<p>raw string</p>"])


# ----------------------------------------------------------------------------- page


def test_assemble_orders_sections_and_is_self_contained(tmp_path):
    late = Section("Embeddings", anchor="embeddings", order=ORDER["embeddings"])
    late.add(figure(_bar_figure(), "A bar chart."), table([{"a": 1, "b": 0.5}, {"a": 2, "b": float("nan")}]))
    early = Section("Curation", anchor="curation", order=ORDER["curation"])
    early.add(image_grid(galaxy_images(5), titles=[f"id {i}\n0.9" for i in range(5)], ncols=5,
                         caption="Five galaxies."))
    paths = [write_fragment(late, tmp_path / "f" / "emb.html"), write_fragment(early, tmp_path / "f" / "cur.html")]
    out = assemble(paths, tmp_path / "report" / "index.html", title="gzmorph report",
                   meta={"dataset": "synthetic", "config": {"cut": "hiwl5", "train": {"epochs": 3, "lr": 1e-3}},
                         "date": "2025-01-01", "code": "0123abcd"})
    text = out.read_text()
    assert list((tmp_path / "report").iterdir()) == [out]  # one file, no leftovers
    assert text.index('id="curation"') < text.index('id="embeddings"')
    assert 'href="#curation"' in text and 'href="#embeddings"' in text
    assert "synthetic" in text and "2025-01-01" in text and "train.epochs" in text
    assert '<span class="gz-fact-k">code</span><span class="gz-fact-v">0123abcd</span>' in text
    # the configuration collapsed on screen, and printed in full (a closed <details> prints its summary only)
    assert text.count("train.epochs") == 2 and '<div class="gz-print-only"><h2>Configuration</h2>' in text
    assert ".gz-print-only { display: block; }" in text
    from gzmorph import __version__
    assert f"gzmorph {__version__}" in text
    assert_self_contained(text)
    images = decode_images(text)
    assert len(images) == text.count("<img") == 6
    assert 'class="gz-pixelated"' in text  # 32 px galaxies upscaled in the grid


def test_the_same_results_give_the_same_page_under_source_date_epoch(tmp_path, monkeypatch):
    """The page's one changing part was its build date; SOURCE_DATE_EPOCH fixes it."""
    sec = Section("Curation", anchor="curation", order=ORDER["curation"])
    sec.add(table([{"a": 1}]))
    frag = write_fragment(sec, tmp_path / "cur.html")
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    pages = [assemble([frag], tmp_path / f"{i}.html", title="t", meta={"dataset": "d"}).read_bytes() for i in (1, 2)]
    assert pages[0] == pages[1] and b"2023-11-14 22:13 UTC" in pages[0]


def test_assemble_rejects_duplicate_anchors(tmp_path):
    a = write_fragment(Section("A", anchor="same"), tmp_path / "a.html")
    b = write_fragment(Section("B", anchor="same"), tmp_path / "b.html")
    with pytest.raises(InputError, match="same"):
        assemble([a, b], tmp_path / "index.html")
    assert not (tmp_path / "index.html").exists()


def test_assemble_is_atomic(tmp_path, monkeypatch):
    frag = write_fragment(Section("A", anchor="a"), tmp_path / "a.html")
    out = tmp_path / "report" / "index.html"

    def boom(*args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(rpage, "render_page", boom)  # where assemble looks it up
    with pytest.raises(RuntimeError, match="disk on fire"):
        assemble([frag], out)
    assert not out.exists()
    monkeypatch.undo()

    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("old report")
    real_write_text = Path.write_text

    def fail_midway(self, data, *args, **kwargs):
        real_write_text(self, data[:100], *args, **kwargs)
        raise OSError("no space left")

    monkeypatch.setattr(Path, "write_text", fail_midway)
    with pytest.raises(OSError):
        assemble([frag], out)
    monkeypatch.undo()
    assert out.read_text() == "old report"
    assert sorted(p.name for p in out.parent.iterdir()) == ["index.html"]


def test_table_formats_and_escapes():
    html = table([{"name": "<script>", "x": 0.123456, "n": 3}], float_format="{:.2f}", caption="c").html
    assert "&lt;script&gt;" in html and "<script>" not in html
    assert "0.12" in html and "0.1234" not in html
    assert '<td class="num">3</td>' in html and "<caption>c</caption>" in html
    assert ">0.1<" in table(pd.DataFrame({"x": [0.123]}), float_format="%.1f").html
    long = table(pd.DataFrame({"x": range(50)}), max_rows=10).html
    assert long.count("<tr>") == 11 and "40 more rows" in long


def test_image_grid_scaling():
    small = image_grid(galaxy_images(2, size=16), ncols=2, cell_px=96).html
    assert small.count("gz-pixelated") == 2
    big = image_grid(galaxy_images(1, size=300), max_px=128, cell_px=96).html
    assert "gz-pixelated" not in big and 'width="128"' in big
    jpeg = image_grid(galaxy_images(1), fmt="jpeg").html
    assert "data:image/jpeg;base64," in jpeg
    with pytest.raises(ValueError, match="titles"):
        image_grid(galaxy_images(2), titles=["one"])


def test_figure_closes_pyplot_figures():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    block = figure(fig, "line")
    assert fig.number not in plt.get_fignums()
    assert decode_images(block.html)[0].format == "PNG"


# ----------------------------------------------------------------------------- curation


def _row_counts(html: str, name: str) -> list[str]:
    m = re.search(rf'<tr(?: class="gz-total")?><th scope="row">{re.escape(name)}</th>(.*?)</tr>', html)
    assert m, f"no table row for {name}"
    return re.findall(r"<td[^>]*>([^<]*)</td>", m.group(1))


def test_counts_table():
    df = synthetic_catalogue(60)
    counts = counts_table(df, CLASSES)
    assert list(counts.columns) == ["train", "val", "test", "total", "share"]
    assert list(counts.index) == CLASSES + ["all classes"]
    for k, c in enumerate(CLASSES):
        for s in ("train", "val", "test"):
            assert counts.loc[c, s] == ((df.label == k) & (df.split == s)).sum()
    assert counts.loc["all classes", "total"] == 60


def test_curation_section_from_arrays(tmp_path):
    df = synthetic_catalogue(150)
    df.loc[df.label == CLASSES.index("merger"), "label"] = 0  # an empty class must still get its row
    df["label_name"] = [CLASSES[k] for k in df.label]
    images = galaxy_images(len(df))
    sec = curation_section(df, (df["id"].to_numpy(), images), CLASSES, curation_stats(df))
    html = sec.render()
    for k, c in enumerate(CLASSES):
        cells = _row_counts(html, c)
        expect = [((df.label == k) & (df.split == s)).sum() for s in ("train", "val", "test")]
        assert cells[:4] == [str(v) for v in expect] + [str((df.label == k).sum())], c
    assert _row_counts(html, "all classes")[3] == "150"
    assert "merger: no galaxies" in html
    # examples: up to 8 confident + 8 random test galaxies per non-empty class, ids in the titles
    n_expected = sum(min(8, (df.label == k).sum()) + min(8, ((df.label == k) & (df.split == "test")).sum()
                         or min(8, (df.label == k).sum()))
                     for k in range(len(CLASSES)) if (df.label == k).any())
    assert html.count('class="gz-cell"') == n_expected
    top = df[df.label == 3].sort_values("confidence", ascending=False).iloc[0]
    assert f"{int(top.id)}<br>{top.confidence:.2f}" in html
    assert "hiwl5" in html and "p(spiral) &gt; 0.5" in html  # the cut's rules
    assert "3 source images could not be read" in html and "42" in html
    assert "Agreement with the simulation truth" in html and "label \\ true" in html
    assert "Other curation statistics" in html and ">seed<" in html
    assert_self_contained(html)
    decode_images(html)


def test_curation_section_from_parquet_and_minimal_input(tmp_path):
    from gzmorph.imageset import write_images

    df = synthetic_catalogue(40, truth=False).drop(columns=["split"])
    write_images(tmp_path / "images.parquet", df["id"].to_numpy()[:-2], galaxy_images(len(df) - 2))
    sec = curation_section(df, tmp_path / "images.parquet", CLASSES, None)
    html = sec.render()
    assert "truth" not in html.lower() and "Corrupt images" not in html
    assert "example ids have no image" in html  # the two ids without an image are named, not fatal
    assert _row_counts(html, "all classes")[-2] == "40"
    out = assemble([write_fragment(sec, tmp_path / "cur.html")], tmp_path / "index.html", meta={"dataset": "d"})
    assert_self_contained(out.read_text())

    bare = curation_section(df, None, CLASSES)  # no images: no example grids
    assert "<img" in bare.render() and "gz-cell" not in bare.render()


def test_fragment_exports_every_figure_and_table(tmp_path):
    """write_fragment(figures=, tables=): one PNG per figure or image grid and one TSV per table of the
    page (the data of Snakemake's --report), named from the blocks, a repeated name made unique."""
    df = synthetic_catalogue(150)
    sec = curation_section(df, (df["id"].to_numpy(), galaxy_images(len(df))), CLASSES, curation_stats(df),
                           n_confident=3, n_random=2)
    sec.add(figure(_bar_figure(), "A bar chart.", name="counts"))  # a second "counts" figure
    figures, tables = tmp_path / "figures", tmp_path / "tables"
    figures.mkdir()
    (figures / "stale.png").write_bytes(b"from an earlier run")
    write_fragment(sec, tmp_path / "cur.html", figures=figures, tables=tables)
    html = sec.render()
    pngs = sorted(p.name for p in figures.iterdir())
    assert len(pngs) == html.count('<figure class="gz-figure">') + html.count('<figure class="gz-grid-figure">')
    assert {"counts.png", "counts-2.png", "confidence.png", "examples-spiral-confident.png",
            "examples-spiral-random.png"} <= set(pngs) and "stale.png" not in pngs
    for p in figures.iterdir():
        with Image.open(p) as im:
            assert im.format == "PNG" and im.width > 50 and im.height > 50
    tsvs = sorted(p.name for p in tables.iterdir())
    assert len(tsvs) == html.count("<table") + html.count('class="gz-metrics"')
    assert {"overview.tsv", "counts.tsv", "per-class-statistics.tsv", "truth-confusion.tsv",
            "other-statistics.tsv"} <= set(tsvs)
    counts = pd.read_csv(tables / "counts.tsv", sep="\t", index_col="class")
    assert counts.loc["all classes", "total"] == 150 and list(counts.index[:-1]) == CLASSES
    assert not list(tmp_path.rglob("*.tmp"))


def test_class_names_and_ids_with_dollar_signs_are_drawn_as_written():
    """matplotlib reads $...$ as mathematics: a class folder or id named like '$\\foo$' made every
    report figure with it fail (ParseFatalException), and '$x$' was drawn as an italic x."""
    import numpy as np

    from gzmorph.report.classify import confusion_figure
    from gzmorph.report.figures import figure_png, new_figure

    fig = new_figure()
    ax = fig.subplots()
    ax.set_title(r"id $\foo$")
    ax.bar([r"$\foo$", "$x$"], [1, 2])
    assert figure_png(fig).startswith(b"\x89PNG")
    metrics = {"confusion": np.eye(2, dtype=int).tolist(), "classes": [r"$\foo$", "b"], "accuracy": 1.0}
    assert figure_png(confusion_figure(metrics)).startswith(b"\x89PNG")


def test_the_results_table_orders_ipcs_as_numbers(tmp_path):
    import json

    from gzmorph.report.summary import distillation_rows

    for ipc in (1, 10, 2):
        d = tmp_path / "distill" / "mtt" / f"ipc{ipc}"
        d.mkdir(parents=True)
        (d / "eval.json").write_text(json.dumps({
            "method": "mtt", "ipc": ipc, "accuracy_mean": 0.5, "accuracy_sd": 0.0,
            "baselines": {"random": {"mean": 0.2}, "full": {"mean": 0.8}}}))
    assert [r[0] for r in distillation_rows(tmp_path)] == [f"distillation, mtt IPC {i}" for i in (1, 2, 10)]
    ev = json.loads((tmp_path / "distill" / "mtt" / "ipc1" / "eval.json").read_text())
    ev.update(balanced_accuracy_mean=0.45)
    ev["baselines"] = {k: {**v, "balanced_accuracy_mean": 0.1 + len(k) / 100} for k, v in ev["baselines"].items()}
    (tmp_path / "distill" / "mtt" / "ipc1" / "eval.json").write_text(json.dumps(ev))
    row = distillation_rows(tmp_path)[0]  # plain and balanced, as the issue asks of every accuracy
    assert row[1:] == ("test accuracy / balanced (random; full data)", "0.500 / 0.450 (0.200 / 0.160; 0.800 / 0.140)")


def test_export_names_made_unique_never_take_a_name_given_as_such():
    """Exports named x, x and x-2 (ids 'A1', 'a1' and 'a1-2' give such names) became x, x-2 and x-2:
    one file written over another."""
    from gzmorph.report.exports import Export, unique_exports

    names = ["x", "x", "x-2", "x"]
    out = unique_exports([Export("figure", n, None, "", False) for n in names] + [Export("table", "x", None, "", False)])
    assert [e.name for e in out] == ["x", "x-3", "x-2", "x-4", "x"]


def test_the_results_table_shows_each_figure_of_its_json(tmp_path):
    """Every number of the README results table is the JSON's, in its place (distinct values, so a
    swapped pair of columns or methods fails)."""
    from gzmorph.io import write_json
    from gzmorph.report.summary import classification_rows, distillation_rows, representation_rows

    write_json(tmp_path / "classify/hiwl/metrics.json", {"accuracy": 0.812, "macro_f1": 0.634, "n_test": 100})
    write_json(tmp_path / "distill/mtt/ipc10/eval.json", {
        "method": "mtt", "ipc": 10, "accuracy_mean": 0.55, "accuracy_sd": 0.02, "balanced_accuracy_mean": 0.5,
        "baselines": {"random": {"mean": 0.3, "balanced_accuracy_mean": 0.25},
                      "mean": {"mean": 0.4, "balanced_accuracy_mean": 0.35},
                      "full": {"mean": 0.9, "balanced_accuracy_mean": 0.8}}})
    write_json(tmp_path / "similarity/metrics.json", {"k": 10, "precision_at_k": 0.71, "base_rate": 0.22})
    write_json(tmp_path / "anomalies/metrics.json", {"n_anomalies": 7, "methods": {
        "gp": {"average_precision": {"mean": 0.5, "sd": 0.1}},
        "astronomaly": {"average_precision": {"mean": 0.3, "sd": 0.0}}}})
    write_json(tmp_path / "finetune/metrics.json", {"budgets": [32, 8], "label": "rings", "arms": {
        "frozen": {"8": {"accuracy_mean": 0.61}, "32": {"accuracy_mean": 0.7}},
        "finetuned": {"8": {"accuracy_mean": 0.72}, "32": {"accuracy_mean": 0.8}}}})
    assert classification_rows(tmp_path) == [
        ("classification, hiwl", "test accuracy (macro F1), 100 galaxies", "0.812 (0.634)")]
    assert distillation_rows(tmp_path) == [
        ("distillation, mtt IPC 10", "test accuracy / balanced (random; full data)",
         "0.550 ± 0.020 / 0.500 (0.300 / 0.250; 0.900 / 0.800)")]
    assert representation_rows(tmp_path) == [
        ("similarity search", "precision@10 (base rate)", "0.710 (0.220)"),
        ("anomalies", "average precision, GP / Astronomaly (7 anomalies)", "0.500 ± 0.100 / 0.300"),
        ("fine-tuning (ring vs not ring)", "test accuracy at 8 labels per class, frozen / finetuned", "0.610 / 0.720")]


def test_every_class_of_a_map_gets_its_own_colour():
    """The embedding map's colours: matplotlib's cycle repeats after 10, so class k and k + 10 looked alike."""
    from gzmorph.report.html import class_colours

    for n in (1, 5, 10, 11, 20, 30):
        colours = class_colours(n)
        assert len(colours) == n and len({tuple(np.round(c, 6)) for c in colours}) == n, n


def test_the_embedding_map_legend_sits_beside_the_map_with_every_class():
    """30 classes: each its own colour, every class and its count in the legend, which is drawn to the
    right of the map, not over it."""
    from gzmorph.report.represent import embedding_map_figure

    rng = np.random.default_rng(0)
    classes = [f"c{i}" for i in range(30)]
    lab = rng.integers(-1, 30, 3000)
    m = pd.DataFrame({"id": np.arange(3000), "x": rng.normal(size=3000), "y": rng.normal(size=3000), "method": "pca"})
    cur = pd.DataFrame({"id": np.flatnonzero(lab >= 0), "label_name": np.array(classes)[lab[lab >= 0]]})
    fig = embedding_map_figure(m, cur, classes)
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    renderer = canvas.get_renderer()
    ax = fig.axes[0]
    legend = ax.get_legend()
    texts = [t.get_text() for t in legend.get_texts()]
    assert texts[:2] == [f"c0 ({(lab == 0).sum()})", f"c1 ({(lab == 1).sum()})"] and texts[-1] == "not in the cut"
    assert len(texts) == 31
    assert legend.get_window_extent(renderer).x0 >= ax.get_window_extent(renderer).x1


def test_the_readme_table_is_not_rewritten_from_a_folder_without_results(tmp_path, capsys):
    """A mistyped or missing run folder (or one whose stages have not run) left an empty table in the
    README, dated "no results"; now one line and exit 2, the README as it was."""
    from gzmorph.report.summary import BEGIN, END, main

    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n\n{BEGIN}\nold\n{END}\n")
    assert main([str(tmp_path / "results" / "nothing"), "--readme", str(readme)]) == 2
    assert "nothing: no results" in capsys.readouterr().err
    assert readme.read_text() == f"# x\n\n{BEGIN}\nold\n{END}\n"
