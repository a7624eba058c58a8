"""Images in the report: matplotlib figures and image grids embedded as ``data:`` URIs (no files).

Also the report's figure conventions: :func:`new_figure` (outside pyplot, constrained layout)
and :func:`style_axes`; and the same figures as PNG files: a figure block keeps its PNG, an image
grid its images, which :func:`grid_png` draws into one PNG (see :mod:`.exports`).
"""

from __future__ import annotations

import base64
import io
import sys
from typing import Any, Sequence

import numpy as np

from .blocks import Block, Export, _text_html, esc, export_name


def data_uri(payload: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(payload).decode('ascii')}"


def as_uint8(image: np.ndarray) -> np.ndarray:
    """One H×W, H×W×3 or H×W×4 image as contiguous uint8 (floats in [0, 1] scaled; H×W×1 -> H×W)."""
    arr = np.asarray(image)
    if arr.dtype != np.uint8:
        if np.issubdtype(arr.dtype, np.floating):
            arr = np.clip(np.nan_to_num(arr) * 255.0 + 0.5, 0, 255).astype(np.uint8)
        else:
            raise ValueError(f"image must be uint8 or float in [0, 1], got {arr.dtype}")
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[-1] not in (3, 4)):
        raise ValueError(f"image must be H×W, H×W×3 or H×W×4, got shape {arr.shape}")
    return np.ascontiguousarray(arr)


def encode_array(image: np.ndarray, *, fmt: str = "png", max_px: int | None = None,
                 quality: int = 90) -> tuple[str, int, int]:
    """Encode one H×W, H×W×3 or H×W×4 uint8 image; return ``(data_uri, width, height)``.

    Images larger than ``max_px`` on their long side are downscaled first.
    """
    from PIL import Image

    img = Image.fromarray(as_uint8(image))
    if max_px is not None and max(img.size) > max_px:
        scale = max_px / max(img.size)
        img = img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))),
                         Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    fmt = fmt.lower()
    if fmt in ("jpg", "jpeg"):
        img.convert("RGB").save(buf, format="JPEG", quality=quality, optimize=True)
        mime = "image/jpeg"
    elif fmt == "png":
        img.save(buf, format="PNG", optimize=True)
        mime = "image/png"
    else:
        raise ValueError(f"fmt must be 'png' or 'jpeg', not {fmt!r}")
    return data_uri(buf.getvalue(), mime), img.width, img.height


def encode_figure(fig, *, dpi: int = 144, close: bool = True) -> tuple[str, int, int]:
    """Render a matplotlib figure to a PNG data URI; return ``(uri, css_width, css_height)``.

    The PNG is rendered at ``dpi`` and shown at 100 px per inch, so it stays
    sharp on high-density screens.  The figure is closed afterwards.
    """
    return _png_uri(figure_png(fig, dpi=dpi, close=close), dpi)


def _png_uri(payload: bytes, dpi: int) -> tuple[str, int, int]:
    """``(data_uri, css_width, css_height)`` of a PNG rendered at ``dpi``, shown at 100 px per inch."""
    from PIL import Image

    with Image.open(io.BytesIO(payload)) as im:
        w, h = im.size
    scale = 100.0 / dpi
    return data_uri(payload, "image/png"), round(w * scale), round(h * scale)


def figure_png(fig, *, dpi: int = 144, close: bool = True) -> bytes:
    """A matplotlib figure as PNG bytes (tight box, white background); closes it unless ``close=False``."""
    buf = io.BytesIO()
    try:
        fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight", facecolor="white")
    finally:
        if close:
            close_figure(fig)
    return buf.getvalue()


def close_figure(fig) -> None:
    """Close ``fig`` in pyplot's registry if pyplot is in use (without importing it)."""
    plt = sys.modules.get("matplotlib.pyplot")
    if plt is not None:
        plt.close(fig)


def user_text_is_plain() -> None:
    """Draw every text as it is written: class names and ids come from users' folders and catalogues,
    and matplotlib would read ``$...$`` in them as mathematics (or fail on it).  The report draws
    no mathematics; this is set in the report's own processes, before a figure is made."""
    import matplotlib

    matplotlib.rcParams["text.parse_math"] = False


def new_figure(figsize: tuple[float, float] = (6.4, 3.6), **kwargs):
    """A matplotlib ``Figure`` outside pyplot (no global state, Agg rendering), constrained layout;
    its texts are plain (:func:`user_text_is_plain`)."""
    from matplotlib.figure import Figure

    user_text_is_plain()
    kwargs.setdefault("layout", "constrained")
    return Figure(figsize=figsize, **kwargs)


def class_colours(n: int) -> np.ndarray:
    """``n`` distinct RGBA colours, one per class: tab10 up to 10, tab20 up to 20, else evenly
    spaced along turbo (matplotlib's default cycle repeats after 10, so class k and k + 10 looked alike)."""
    from matplotlib import colormaps

    if n <= 10:
        return colormaps["tab10"](np.arange(n))
    if n <= 20:
        return colormaps["tab20"](np.arange(n))
    return colormaps["turbo"](np.linspace(0.05, 0.95, n))


def style_axes(ax, *, grid: str | None = "y") -> None:
    """The report's axes style: no top/right spines, light grid on ``grid`` ('x', 'y', 'both' or None)."""
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    for side in ("left", "bottom"):
        ax.spines[side].set_color("#9aa1b1")
    ax.tick_params(colors="#3a4150", labelsize=9)
    if grid:
        ax.grid(True, axis=grid, color="#e3e6ee", linewidth=0.8)
        ax.set_axisbelow(True)


def figure(fig, caption: str | None = None, *, dpi: int = 144, alt: str | None = None,
           name: str | None = None) -> Block:
    """A matplotlib figure as an embedded PNG with a caption; closes the figure.

    The same PNG is exported as the figure ``name`` (default: from the caption).
    """
    payload = figure_png(fig, dpi=dpi)
    uri, w, h = _png_uri(payload, dpi)
    cap = f"<figcaption>{_text_html(caption)}</figcaption>" if caption else ""
    return Block(f'<figure class="gz-figure"><img src="{uri}" width="{w}" height="{h}" '
                 f'alt="{esc(alt or caption or "figure")}">{cap}</figure>', "figure",
                 (Export("figure", export_name(name, caption, alt, default="figure"), payload, caption),))


def image_grid(images, titles: Sequence[Any] | None = None, *, ncols: int = 8,
               caption: str | None = None, cell_px: int = 112, max_px: int | None = 160,
               fmt: str = "png", pixelated: bool | None = None, label: str | None = None,
               name: str | None = None, export_title: str | None = None) -> Block:
    """A responsive grid of image tensors (N×H×W×3 uint8, or a list of arrays).

    Each image is embedded at its own resolution (downscaled to ``max_px`` when
    larger) and shown ``cell_px`` wide; images smaller than the cell are
    upscaled with ``image-rendering: pixelated`` (``pixelated=None``: when
    upscaled).  ``titles`` (one per image, ``\\n`` for a line break) go under
    each image.  The grid wraps to fewer than ``ncols`` columns on a narrow
    screen.  ``label`` names the grid in a small heading above it.  The grid is exported as the
    figure ``name`` (default: from the label or caption), drawn by :func:`grid_png` under
    ``export_title`` (default: the caption or label).
    """
    images = list(images) if not isinstance(images, np.ndarray) else images
    n = len(images)
    if titles is not None and len(titles) != n:
        raise ValueError(f"{len(titles)} titles for {n} images")
    cells = []
    for i in range(n):
        uri, w, h = encode_array(images[i], fmt=fmt, max_px=max_px)
        pix = pixelated if pixelated is not None else (max(w, h) < cell_px)
        cls = ' class="gz-pixelated"' if pix else ""
        title = "" if titles is None else str(titles[i])
        t_html = "<br>".join(esc(part) for part in title.split("\n"))
        alt = esc(title.replace("\n", " ") or f"image {i}")
        cells.append(f'<div class="gz-cell"><img{cls} src="{uri}" width="{w}" height="{h}" alt="{alt}">'
                     + (f'<div class="gz-cell-title">{t_html}</div>' if title else "") + "</div>")
    if not cells:
        cells.append('<div class="gz-muted gz-small">(no images)</div>')
    lab = f'<div class="gz-grid-label">{esc(label)}</div>' if label else ""
    cap = f"<figcaption>{_text_html(caption)}</figcaption>" if caption else ""
    style = f"--gz-cell:{int(cell_px)}px;--gz-ncols:{int(ncols)}"
    export = Export("grid", export_name(name, label, caption, default="images"),
                    (images, None if titles is None else [str(t) for t in titles], int(ncols)),
                    export_title or caption or label)
    return Block(f'<figure class="gz-grid-figure">{lab}<div class="gz-grid" style="{style}">'
                 f'{"".join(cells)}</div>{cap}</figure>', "image_grid", (export,))


def class_grid(rows: Sequence[tuple[str, Any]], *, caption: str | None = None, cell_px: int = 72,
               max_px: int | None = 160, label: str | None = None, name: str | None = None) -> Block:
    """Images in one row per class and one column per image, the class's name at the head of its
    row (distilled prototypes: a row of IPC images per class).  ``rows`` is ``[(class, images), ...]``.
    The columns are fixed: a narrow screen scrolls the grid sideways instead of wrapping a class onto
    a second line.  Exported as one PNG of the same rows (:func:`grid_png` with ``row_labels``)."""
    ncols = max((len(images) for _, images in rows), default=1) or 1
    cells = []
    for cls, images in rows:
        cells.append(f'<div class="gz-class-name">{esc(cls)}</div>')
        for i in range(ncols):
            if i >= len(images):
                cells.append("<div></div>")
                continue
            uri, w, h = encode_array(images[i], max_px=max_px)
            pix = ' class="gz-pixelated"' if max(w, h) < cell_px else ""
            cells.append(f'<div class="gz-cell"><img{pix} src="{uri}" width="{w}" height="{h}" '
                         f'alt="{esc(cls)} {i + 1}"></div>')
    lab = f'<div class="gz-grid-label">{esc(label)}</div>' if label else ""
    cap = f"<figcaption>{_text_html(caption)}</figcaption>" if caption else ""
    style = f"grid-template-columns:max-content repeat({ncols}, {int(cell_px)}px)"
    flat = [img for _, images in rows for img in images]
    same = all(len(images) == ncols for _, images in rows)
    export = Export("grid", export_name(name, label, caption, default="images"),
                    (flat, None, ncols if same else 1, [c for c, _ in rows] if same else None),
                    caption or label)
    return Block(f'<figure class="gz-grid-figure">{lab}<div class="gz-class-grid" style="{style}">'
                 f'{"".join(cells)}</div>{cap}</figure>', "class_grid", (export,))


def grid_png(images, titles: Sequence[str] | None = None, *, ncols: int = 8, label: str | None = None,
             cell_in: float = 1.1, dpi: int = 144, row_labels: Sequence[str] | None = None) -> bytes:
    """An image grid (as :func:`image_grid` shows it) drawn into one PNG: ``ncols`` images a row,
    each under its title, ``label`` above them all, ``row_labels`` left of each row."""
    n = len(images)
    ncols = max(1, min(int(ncols), n)) if n else 1
    nrows = max(1, -(-n // ncols))
    lines = max((str(t).count("\n") + 1 for t in titles), default=0) if titles else 0
    fig = new_figure((cell_in * ncols, (cell_in + 0.12 * lines) * nrows + (0.3 if label else 0)))
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.set_axis_off()
        if i >= n:
            continue
        img = as_uint8(images[i])
        ax.imshow(img, cmap="gray" if img.ndim == 2 else None, interpolation="nearest")
        if titles:
            ax.set_title(titles[i], fontsize=6, color="#3a4150")
    for r, text in enumerate(list(row_labels or [])[:nrows]):
        axes[r, 0].text(-0.08, 0.5, str(text), transform=axes[r, 0].transAxes, ha="right", va="center",
                        fontsize=7, color="#3a4150")
    if not n:
        axes[0, 0].text(0.5, 0.5, "(no images)", ha="center", va="center", fontsize=8, color="#868e96")
    if label:
        fig.suptitle(label, fontsize=9)
    return figure_png(fig, dpi=dpi)
