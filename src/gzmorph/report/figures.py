"""Images in the report: matplotlib figures and image grids embedded as ``data:`` URIs (no files).

Also the report's figure conventions: :func:`new_figure` (outside pyplot, constrained layout)
and :func:`style_axes`.
"""

from __future__ import annotations

import base64
import io
import sys
from typing import Any, Sequence

import numpy as np

from .blocks import Block, _text_html, esc


def data_uri(payload: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(payload).decode('ascii')}"


def encode_array(image: np.ndarray, *, fmt: str = "png", max_px: int | None = None,
                 quality: int = 90) -> tuple[str, int, int]:
    """Encode one H×W, H×W×3 or H×W×4 uint8 image; return ``(data_uri, width, height)``.

    Images larger than ``max_px`` on their long side are downscaled first.
    """
    from PIL import Image

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
    img = Image.fromarray(np.ascontiguousarray(arr))
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
    from PIL import Image

    buf = io.BytesIO()
    try:
        fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight", facecolor="white")
    finally:
        if close:
            close_figure(fig)
    payload = buf.getvalue()
    with Image.open(io.BytesIO(payload)) as im:
        w, h = im.size
    scale = 100.0 / dpi
    return data_uri(payload, "image/png"), round(w * scale), round(h * scale)


def close_figure(fig) -> None:
    """Close ``fig`` in pyplot's registry if pyplot is in use (without importing it)."""
    plt = sys.modules.get("matplotlib.pyplot")
    if plt is not None:
        plt.close(fig)


def new_figure(figsize: tuple[float, float] = (6.4, 3.6), **kwargs):
    """A matplotlib ``Figure`` outside pyplot (no global state, Agg rendering), constrained layout."""
    from matplotlib.figure import Figure

    kwargs.setdefault("layout", "constrained")
    return Figure(figsize=figsize, **kwargs)


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


def figure(fig, caption: str | None = None, *, dpi: int = 144, alt: str | None = None) -> Block:
    """A matplotlib figure as an embedded PNG with a caption; closes the figure."""
    uri, w, h = encode_figure(fig, dpi=dpi)
    cap = f"<figcaption>{_text_html(caption)}</figcaption>" if caption else ""
    return Block(f'<figure class="gz-figure"><img src="{uri}" width="{w}" height="{h}" '
                 f'alt="{esc(alt or caption or "figure")}">{cap}</figure>', "figure")


def image_grid(images, titles: Sequence[Any] | None = None, *, ncols: int = 8,
               caption: str | None = None, cell_px: int = 112, max_px: int | None = 160,
               fmt: str = "png", pixelated: bool | None = None, label: str | None = None) -> Block:
    """A responsive grid of image tensors (N×H×W×3 uint8, or a list of arrays).

    Each image is embedded at its own resolution (downscaled to ``max_px`` when
    larger) and shown ``cell_px`` wide; images smaller than the cell are
    upscaled with ``image-rendering: pixelated`` (``pixelated=None``: when
    upscaled).  ``titles`` (one per image, ``\\n`` for a line break) go under
    each image.  The grid wraps to fewer than ``ncols`` columns on a narrow
    screen.  ``label`` names the grid in a small heading above it.
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
    return Block(f'<figure class="gz-grid-figure">{lab}<div class="gz-grid" style="{style}">'
                 f'{"".join(cells)}</div>{cap}</figure>', "image_grid")
