"""Zoobot-style representation (Walmsley et al. 2022): one model answers every question at once.

The model is any backbone of the registry (:func:`gzmorph.models.create_model`) with one output
per answer of the decision tree (37 for the Kaggle layout).  Output ``x`` becomes a Dirichlet
concentration ``alpha = 1 + 100 * sigmoid(x)``; the loss of one galaxy is the negative log
Dirichlet-multinomial likelihood of each question's vote counts ``k`` (``N = sum k``), summed
over questions, zero for questions nobody reached (``N = 0``)::

    log p(k | alpha) = log N! - sum log k_i! + log G(A) - log G(N + A) + sum [log G(k_i + a_i) - log G(a_i)]

with ``A = sum alpha`` over the answers of the question.  The representation is the pooled
penultimate layer (``model.features``).

Vote counts
-----------
* A catalogue with per-answer counts (GZ2 ``t01_..._a01_smooth_count`` ...) gives them directly.
* A catalogue with only Kaggle cumulative fractions gets *approximate* counts: the conditional
  fraction of each answer x the question's reach x ``n_volunteers`` (default 40, about the
  median number of GZ2 classifications per galaxy), rounded.  Question 6 ("odd?") has reach 1 by
  the Kaggle convention; NaN fractions (unknown, e.g. ``Class8.*`` of the Zoobot GZ2 release)
  become zero counts, i.e. that question does not enter the loss.

Training (:func:`train_representation`) uses the one training loop :func:`gzmorph.train.fit`,
on every galaxy of the source (not only a curated cut); a random ``val_fraction`` monitors the
loss.  The model file (``model.pt``) holds everything needed to embed new images: a safetensors
file (:func:`gzmorph.io.save_bundle`), the weights as its tensors and the rest as a JSON header.

Greyscale (``greyscale``, Zoobot's input; ``represent.preset: paper``): every image becomes the
unweighted mean of its three channels, repeated to the backbone's three input channels (the first
convolution then acts on one grey channel, as Zoobot's 1-channel stem does, and every backbone and
local pretrained encoder fits as it is), normalised with the grey image's mean and std.  The model
file's ``norm`` record carries ``greyscale: true`` (:func:`gzmorph.augment.input_transform`), so
embedding, prediction and fine-tuning from the file apply it too.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .io import InputError, save_bundle
from .represent_settings import RepresentSettings
from .tree import GZ2_TREE, DecisionTree

_DEFAULTS = RepresentSettings()  # the one place the represent: defaults live

log = logging.getLogger(__name__)

MODEL_FORMAT = "gzmorph.representation/1"

# --------------------------------------------------------------------------- votes


def question_columns(tree: DecisionTree = GZ2_TREE) -> list[tuple[int, list[str]]]:
    """``[(question number, [its answers' Kaggle columns]), ...]`` in tree order."""
    return [(q.number, [a.kaggle for a in q.answers]) for q in tree.questions]


def membership_matrix(tree: DecisionTree = GZ2_TREE) -> np.ndarray:
    """answers × questions 0/1 matrix: ``M[i, j] = 1`` when answer ``i`` belongs to question ``j``."""
    cols = tree.kaggle_columns
    groups = question_columns(tree)
    m = np.zeros((len(cols), len(groups)), dtype=np.float32)
    for j, (_, answers) in enumerate(groups):
        for a in answers:
            m[cols.index(a), j] = 1.0
    return m


def check_vote_table(df: pd.DataFrame, tol: float = 0.02, where: str = "catalogue",
                     tree: DecisionTree = GZ2_TREE) -> None:
    """Raise an ``InputError`` naming the problem when ``df`` cannot train the representation.

    Needs every Kaggle-layout answer column; values in [0, 1] (NaN = unknown); each question's
    answers, as fractions of those who reached it, must add up to 1 within ``tol`` -- or to 0
    where nobody answered it, as real GZ2 weighted fractions have for a few galaxies
    (:meth:`DecisionTree.sum_violations` on conditional fractions).
    """
    missing = [c for c in tree.kaggle_columns if c not in df.columns]
    if missing:
        qs = sorted({tree.question_of(c).number for c in missing})
        raise InputError(f"{where}: the decision tree expects vote-fraction columns that are missing: "
                         f"{', '.join(missing[:12])}{' ...' if len(missing) > 12 else ''} "
                         f"(question(s) {', '.join(map(str, qs))})")
    frac = df[tree.kaggle_columns].apply(pd.to_numeric, errors="coerce")
    vals = frac.to_numpy(float)
    bad = np.isfinite(vals) & ((vals < -1e-6) | (vals > 1 + 1e-6))
    if bad.any():
        r, c = np.argwhere(bad)[0]
        ident = df["id"].iloc[r] if "id" in df.columns else df.index[r]
        raise InputError(f"{where}: {int(bad.sum())} vote fractions outside [0, 1], e.g. "
                         f"{tree.kaggle_columns[c]} = {vals[r, c]:g} for id {ident}")
    viol = tree.sum_violations(tree.to_conditional(frac), tol=tol, conditional=True)
    if len(viol):
        ids = df["id"].to_numpy() if "id" in df.columns else df.index.to_numpy()
        pos = {k: i for i, k in enumerate(df.index)}
        per_q = viol["question"].value_counts().sort_index()
        examples = "; ".join(
            f"id {ids[pos[r.row]]} question {r.question}: sum {r.sum:.3f}, expected {r.expected:.3f}"
            for r in viol.head(5).itertuples())
        raise InputError(
            f"{where}: the vote fractions of {viol['row'].nunique()} of {len(df)} galaxies break the "
            f"decision tree's sums by more than {tol} ({len(viol)} question sums; per question "
            f"{', '.join(f'Q{q}: {n}' for q, n in per_q.items())}). First: {examples}")


def count_columns(df: pd.DataFrame, tree: DecisionTree = GZ2_TREE) -> dict[int, list[str]]:
    """The per-answer vote count columns of each question that has them all: ``<gz2 answer>_count``
    (Hart et al.'s tables), else the Zoobot GZ2 release's names (which has no question 8)."""
    from .sources.gz2_remote import ZOOBOT_COUNT_COLUMNS

    out = {}
    for q in tree.questions:
        for names in ([f"{a.gz2}_count" for a in q.answers], [ZOOBOT_COUNT_COLUMNS.get(a.gz2) for a in q.answers]):
            if all(c is not None and c in df.columns for c in names):
                out[q.number] = names
                break
    return out


def vote_counts(df: pd.DataFrame, n_volunteers: int = _DEFAULTS.n_volunteers,
                tree: DecisionTree = GZ2_TREE) -> tuple[np.ndarray, str]:
    """Per-answer vote counts (N × answers, int64) and where they came from: the catalogue's counts
    for every question and galaxy that has them (``counts``), fractions × reach × ``n_volunteers``
    for the rest (``fractions``; ``counts and fractions`` when both).  Decided galaxy by galaxy, as
    several sources merged into one table leave the count columns empty in the rows of a source
    without them."""
    real = {number: df[cols].apply(pd.to_numeric, errors="coerce").to_numpy(float)
            for number, cols in count_columns(df, tree).items()}
    have = {number: np.isfinite(k).all(axis=1) for number, k in real.items()}
    complete = len(real) == len(tree.questions) and all(h.all() for h in have.values())
    out = np.zeros((len(df), len(tree.kaggle_columns)), dtype=np.int64) if complete \
        else _fraction_counts(df, n_volunteers, tree)
    for number, k in real.items():
        idx = [tree.kaggle_columns.index(a.kaggle) for a in tree.question(number).answers]
        rows = have[number]
        out[np.ix_(rows, idx)] = np.rint(k[rows]).clip(0).astype(np.int64)
    if complete:
        return out, "counts"
    return out, "counts and fractions" if any(h.any() for h in have.values()) else "fractions"


def _fraction_counts(df: pd.DataFrame, n_volunteers: int, tree: DecisionTree) -> np.ndarray:
    """Counts from the cumulative fractions: conditional fraction × reach × ``n_volunteers``."""
    if n_volunteers < 1:
        raise InputError(f"n_volunteers must be >= 1, got {n_volunteers}")
    frac = df[tree.kaggle_columns].apply(pd.to_numeric, errors="coerce")
    known = frac.notna()
    cond = tree.to_conditional(frac.fillna(0.0))
    reach = tree.reach(frac.fillna(0.0))
    out = np.zeros((len(df), len(tree.kaggle_columns)), dtype=np.int64)
    for j, c in enumerate(tree.kaggle_columns):
        q = tree.question_of(c).number
        v = cond[c].to_numpy(float) * reach[q].to_numpy(float) * n_volunteers
        out[:, j] = np.where(known[c].to_numpy(), np.rint(np.clip(v, 0, None)), 0)
    # a question with any unknown answer is left out entirely
    for q, answers in question_columns(tree):
        idx = [tree.kaggle_columns.index(a) for a in answers]
        unknown = ~known[answers].all(axis=1).to_numpy()
        out[np.ix_(unknown, idx)] = 0
    return out


# --------------------------------------------------------------------------- loss


def concentrations(logits: torch.Tensor) -> torch.Tensor:
    """Dirichlet concentrations ``1 + 100 * sigmoid(logits)`` (in float32)."""
    return 1.0 + 100.0 * torch.sigmoid(logits.float())


def dirichlet_multinomial_nll(logits: torch.Tensor, counts: torch.Tensor, membership: torch.Tensor,
                              per_question: bool = False) -> torch.Tensor:
    """Negative log Dirichlet-multinomial likelihood per galaxy (N,) or per question (N × Q).

    ``membership`` is the answers × questions matrix of :func:`membership_matrix`.  Questions
    with no votes contribute exactly 0.
    """
    alpha = concentrations(logits)
    k = counts.to(alpha.dtype)
    m = membership.to(alpha.device, alpha.dtype)
    n_q = k @ m
    a_q = alpha @ m
    per_answer = torch.lgamma(k + alpha) - torch.lgamma(alpha) - torch.lgamma(k + 1.0)
    ll = torch.lgamma(n_q + 1.0) + torch.lgamma(a_q) - torch.lgamma(n_q + a_q) + per_answer @ m
    ll = torch.where(n_q > 0, ll, torch.zeros_like(ll))
    return -ll if per_question else -ll.sum(1)


class DirichletMultinomialLoss(torch.nn.Module):
    """``loss(logits, counts)``: the mean over galaxies of :func:`dirichlet_multinomial_nll`."""

    def __init__(self, tree: DecisionTree = GZ2_TREE):
        super().__init__()
        self.register_buffer("membership", torch.from_numpy(membership_matrix(tree)))

    def forward(self, logits: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
        return dirichlet_multinomial_nll(logits, counts, self.membership).mean()


def expected_fractions(logits: torch.Tensor, tree: DecisionTree = GZ2_TREE) -> torch.Tensor:
    """Mean conditional vote fraction of each answer under the predicted Dirichlet (alpha / A)."""
    alpha = concentrations(logits)
    m = torch.from_numpy(membership_matrix(tree)).to(alpha.device)
    return alpha / (alpha @ m @ m.T)


# --------------------------------------------------------------------------- training


@dataclass
class RepresentConfig:
    """The options of one training run: the training keys of the ``represent:`` settings (their
    defaults are :class:`~gzmorph.represent_settings.RepresentSettings`'), its seed and progress bar."""

    backbone: str = _DEFAULTS.backbone
    image_size: int = _DEFAULTS.image_size  # 0: any; else the images must be this size
    greyscale: bool = _DEFAULTS.greyscale
    model_kwargs: dict = field(default_factory=lambda: dict(_DEFAULTS.model_kwargs))
    epochs: int = _DEFAULTS.epochs
    batch_size: int = _DEFAULTS.batch_size
    lr: float = _DEFAULTS.lr
    weight_decay: float = _DEFAULTS.weight_decay
    val_fraction: float = _DEFAULTS.val_fraction
    patience: int | None = _DEFAULTS.patience  # 0 or None: no early stopping
    augment: bool | dict = _DEFAULTS.augment
    n_volunteers: int = _DEFAULTS.n_volunteers
    sum_tolerance: float = _DEFAULTS.sum_tolerance
    pretrained: str | None = _DEFAULTS.pretrained
    device: str = _DEFAULTS.device
    amp: str = _DEFAULTS.amp
    seed: int = 0
    progress: bool = True

    @classmethod
    def from_params(cls, params: dict) -> "RepresentConfig":
        from .settings import options

        return options(cls, params, "represent")


@contextlib.contextmanager
def flush_denormal():
    """Flush denormal floats to zero while training on the CPU (small batches of a CNN can be
    several times slower with denormals); restored to the default (off) afterwards."""
    ok = torch.set_flush_denormal(True)
    try:
        yield ok
    finally:
        if ok:
            torch.set_flush_denormal(False)


def fit_representation(images, counts: np.ndarray, cfg: RepresentConfig,
                       checkpoint_dir: str | Path | None = None, meta: dict | None = None):
    """Train a registry backbone with one output per answer on ``images`` (uint8 N×S×S×3: an
    array, or rows of an image store streamed in bounded memory, :class:`gzmorph.stream.StoreRows`).

    Returns ``(model, norm, history)``; the model is on the CPU in eval mode.
    """
    with flush_denormal():
        return _fit_representation(images, counts, cfg, checkpoint_dir, meta)


def _fit_representation(images, counts, cfg, checkpoint_dir, meta):
    from . import augment as A
    from .models import check_model_kwargs, create_model
    from .stream import StoreRows, as_rows, channel_stats_rows
    from .train import cosine_schedule, fit, pick_device

    check_model_kwargs(cfg.backbone, cfg.model_kwargs, "represent.model_kwargs")  # not a TypeError in training
    rows = as_rows(images)
    n = len(rows)
    if n < 4:
        raise InputError(f"need at least 4 galaxies to train the representation, got {n}")
    if len(counts) != n:
        raise ValueError(f"{len(counts)} count rows for {n} images")
    rng = np.random.default_rng(cfg.seed)
    perm = rng.permutation(n)
    n_val = int(round(cfg.val_fraction * n)) if cfg.val_fraction > 0 else 0
    n_val = min(n_val, n - 2)
    va, tr = np.sort(perm[:n_val]), np.sort(perm[n_val:])
    if isinstance(rows, StoreRows):
        x_tr, x_va, size = rows.subset(tr), rows.subset(va), int(rows.store.shape[0])
        mean, std = channel_stats_rows(x_tr, greyscale=cfg.greyscale)
    else:
        x = rows.x
        x_tr, x_va, size = x[torch.as_tensor(tr)], x[torch.as_tensor(va)], int(x.shape[1])
        mean, std = A.channel_stats(x_tr, greyscale=cfg.greyscale)
    if cfg.image_size and cfg.image_size != size:  # e.g. preset paper: EfficientNet-B0 at 224 px
        raise InputError(f"the representation's images are {size} px but represent.image_size is "
                         f"{cfg.image_size} (rerun represent_images at that size)")
    # the input pipeline as the model file records it (Representation reads it back)
    norm = {"mean": mean, "std": std, **({"greyscale": True} if cfg.greyscale else {})}
    transform = A.input_transform(norm, A.AugmentConfig.from_value(cfg.augment))
    device = pick_device(cfg.device)
    torch.manual_seed(cfg.seed)
    n_out = counts.shape[1]
    model = create_model(cfg.backbone, n_out, size, pretrained=cfg.pretrained or None, **cfg.model_kwargs)
    y = torch.from_numpy(counts.astype(np.float32))
    loss = DirichletMultinomialLoss()
    steps = max(1, len(tr) // cfg.batch_size)
    val = (x_va, y[torch.as_tensor(va)]) if n_val else None
    log.info("%s at %d px%s: %d train / %d val galaxies, %d answers, %d epochs", cfg.backbone, size,
             " (greyscale)" if cfg.greyscale else "", len(tr), n_val, n_out, cfg.epochs)
    result = fit(model, loss, (x_tr, y[torch.as_tensor(tr)]),
                 val, epochs=cfg.epochs, batch_size=cfg.batch_size, seed=cfg.seed,
                 optimizer=lambda p: torch.optim.AdamW(p, lr=cfg.lr, weight_decay=cfg.weight_decay),
                 scheduler=cosine_schedule(warmup_steps=min(steps, 100)), transform=transform,
                 monitor="val_loss", mode="min", patience=cfg.patience or None,
                 checkpoint_dir=checkpoint_dir, meta=meta, device=device, amp=cfg.amp,
                 progress=cfg.progress)
    model.cpu().eval()
    return model, norm, result.history


def train_representation(images: str | Path, catalogue: str | Path, out: str | Path, *,
                         checkpoint_dir: str | Path | None = None, metrics_path: str | Path | None = None,
                         **params) -> dict:
    """Train on every galaxy of ``images`` (an image table) with votes from ``catalogue``
    (the source table); write the model file ``out``.  Returns a summary dict."""
    from .distributed import is_main
    from .imageset import ImageStore, content_hash, preprocess_meta
    from .pretrained import encoder_hash
    from .stream import StoreRows
    from .train import discard_checkpoints, fingerprint, write_table

    cfg = RepresentConfig.from_params(params)
    df = pd.read_parquet(catalogue)
    if "id" not in df.columns:
        raise InputError(f"{catalogue}: no 'id' column")
    check_vote_table(df, cfg.sum_tolerance, where=str(catalogue))
    store = ImageStore(images)
    ids = store.ids
    pos = pd.Series(np.arange(len(df)), index=df["id"].to_numpy())
    missing = [i.item() if isinstance(i, np.generic) else i for i in ids if i not in pos.index]
    if missing:
        raise InputError(f"{images}: image ids not in {catalogue}: {missing[:10]}")
    df = df.iloc[pos.loc[ids].to_numpy()].reset_index(drop=True)
    counts, count_source = vote_counts(df, cfg.n_volunteers)
    hyper = {k: v for k, v in asdict(cfg).items() if k not in ("device", "amp", "progress")}
    meta = {"model": cfg.backbone, "classes": GZ2_TREE.kaggle_columns,
            "fingerprint": fingerprint(ids, counts, hyper, content_hash(images), encoder_hash(cfg.pretrained))}
    model, norm, history = fit_representation(StoreRows(store), counts, cfg, checkpoint_dir, meta)
    bundle = {"format": MODEL_FORMAT, "answers": GZ2_TREE.kaggle_columns, "image_size": int(store.shape[0]),
              "norm": norm, "model_config": model.config, "num_features": int(model.num_features),
              "state_dict": model.state_dict(), "config": asdict(cfg), "count_source": count_source,
              "n_galaxies": int(len(ids)), "history": history, "preprocess": preprocess_meta(images),
              "mean_votes": float(counts.reshape(len(counts), -1)[:, :3].sum(1).mean())}
    if is_main():  # under data-parallel training, rank 0 alone writes (gzmorph.distributed)
        if metrics_path:
            write_table(Path(metrics_path), history)
        save_bundle(out, bundle, MODEL_FORMAT)  # safetensors: weights + JSON header
        discard_checkpoints(checkpoint_dir)
    return {k: v for k, v in bundle.items() if k != "state_dict"}


class Representation:
    """A loaded ``model.pt``: :meth:`embed` images to vectors, :meth:`predict` expected vote fractions."""

    def __init__(self, bundle: dict, path: str = "model", device=None):
        from .models import create_model
        from .train import pick_device

        cfg = dict(bundle["model_config"])
        self.bundle, self.path = bundle, path
        self.image_size, self.norm = int(bundle["image_size"]), bundle["norm"]
        try:
            self.model = create_model(cfg.pop("name"), cfg.pop("num_classes"), cfg.pop("image_size"), **cfg)
        except InputError as err:
            raise InputError(f"{path}: {err}") from None
        self.model.load_state_dict(bundle["state_dict"])
        self.device = pick_device(device)
        self.model.to(self.device).eval()

    @property
    def amp(self) -> str:
        """The precision the model trained with (``represent.amp``; :func:`gzmorph.train.recorded_amp`)."""
        from .train import recorded_amp

        return recorded_amp(self.bundle)

    @property
    def dim(self) -> int:
        return int(self.model.num_features)

    @property
    def greyscale(self) -> bool:
        return bool(self.norm.get("greyscale", False))

    @property
    def transform(self):
        from .augment import input_transform

        return input_transform(self.norm)  # greyscale too, where the model was trained so

    def check_images(self, images: np.ndarray, where: str = "images") -> None:
        if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
            raise InputError(f"{where}: expected uint8 N×H×W×3 images, got {images.dtype} {images.shape}")
        if images.shape[1:3] != (self.image_size, self.image_size):
            raise InputError(f"{where}: images are {images.shape[1]}×{images.shape[2]} px but the "
                             f"representation {self.path} expects {self.image_size}×{self.image_size} px")

    @torch.no_grad()
    def _run(self, images, fn, batch_size: int, progress: bool, desc: str) -> np.ndarray:
        from tqdm.auto import tqdm

        from .train import amp_dtype

        images = np.asarray(images)
        self.check_images(images)
        dtype = amp_dtype(self.device, self.amp)
        out = []
        tf = self.transform
        for i in tqdm(range(0, len(images), batch_size), desc=desc, disable=not progress,
                      file=sys.stderr, mininterval=5):
            xb = torch.from_numpy(np.ascontiguousarray(images[i:i + batch_size])).to(self.device)
            with torch.autocast(self.device.type, dtype=dtype, enabled=dtype is not None):
                out.append(fn(tf(xb)).float().cpu())
        return torch.cat(out).numpy() if out else np.zeros((0, self.dim), np.float32)

    def embed(self, images, batch_size: int = 256, progress: bool = False) -> np.ndarray:
        """Pooled-feature vectors (N × dim, float32)."""
        return self._run(images, self.model.features, batch_size, progress, "embed").astype(np.float32)

    def predict(self, images, batch_size: int = 256) -> np.ndarray:
        """Expected conditional vote fraction of every answer (N × answers)."""
        logits = self._run(images, self.model, batch_size, False, "predict")
        return expected_fractions(torch.from_numpy(logits)).numpy()


def load_representation(path: str | Path, device=None) -> Representation:
    from .io import load_bundle

    return Representation(load_bundle(path, MODEL_FORMAT, "representation model file"), str(path), device)


# --------------------------------------------------------------------------- embeddings


def embedding_table(ids, vectors: np.ndarray):
    """``id`` (int64, or string) + ``embedding`` (fixed-size list<float32>) as an Arrow table."""
    import pyarrow as pa

    from .imageset import _id_array

    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if vectors.ndim != 2 or len(vectors) != len(ids):
        raise ValueError(f"{len(ids)} ids for vectors of shape {vectors.shape}")
    col = pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1), pa.float32()), vectors.shape[1])
    return pa.table({"id": _id_array(ids), "embedding": col})


def write_embeddings(path: str | Path, ids, vectors: np.ndarray, metadata: dict | None = None) -> None:
    """``id`` (int64, or string) + ``embedding`` (fixed-size list<float32>) Parquet, atomically."""
    from .io import parquet_stream

    meta = {"embedding_dim": int(np.shape(vectors)[1]), **(metadata or {})}
    with parquet_stream(path, metadata=meta) as write:
        write(embedding_table(ids, vectors))


def iter_embeddings(path: str | Path, batch_size: int = 8192):
    """``(ids, vectors float32)`` of an embeddings table, a batch at a time, in file order, without
    pre-buffering (which holds the whole file): :func:`read_embeddings` of a 195 MB matrix peaked
    347 MB above its start this way, 838 MB through ``read_table``."""
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(path, pre_buffer=False)
    if not {"id", "embedding"} <= set(pf.schema_arrow.names):
        raise InputError(f"{path}: not an embeddings table (needs 'id' and 'embedding' columns)")
    for batch in pf.iter_batches(batch_size=batch_size, columns=["id", "embedding"]):
        col = batch.column("embedding")
        flat = col.flatten().to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
        yield batch.column("id").to_numpy(zero_copy_only=False), flat.reshape(len(col), -1)


def embedding_ids(path: str | Path) -> np.ndarray:
    """The ids of an embeddings table, in file order (its vectors left unread)."""
    import pyarrow.parquet as pq

    return pq.read_table(path, columns=["id"]).column("id").to_numpy()


def read_embeddings(path: str | Path, rows=None, batch_size: int = 8192) -> tuple[np.ndarray, np.ndarray]:
    """``(ids, vectors N × d float32)`` of an embeddings table (only its ``rows``, positions in the
    file, in file order, when given), read a batch at a time into one array: the matrix is held
    once, not as an Arrow table and its copies besides."""
    import pyarrow.parquet as pq

    n = pq.ParquetFile(path).metadata.num_rows
    rows = np.arange(n) if rows is None else np.sort(np.asarray(rows, np.int64))
    ids, out, pos, got = [], None, 0, 0
    for batch_ids, vec in iter_embeddings(path, batch_size):
        if out is None:
            out = np.empty((len(rows), vec.shape[1]), np.float32)
        take = rows[np.searchsorted(rows, pos):np.searchsorted(rows, pos + len(vec))] - pos
        out[got:got + len(take)] = vec[take]
        ids.append(batch_ids[take])
        pos, got = pos + len(vec), got + len(take)
    if out is None or len(rows) == 0:  # an empty table (its ids' type kept)
        return embedding_ids(path)[rows], np.zeros((0, 0), np.float32)
    return np.concatenate(ids), out


def embed_table(model: str | Path | Representation, images: str | Path, out: str | Path,
                batch_size: int = 256, device=None, progress: bool = True) -> tuple[np.ndarray, int]:
    """Embed every galaxy of an image table into ``out``, streaming the images a row group at a time
    and writing the vectors as they come (none is kept); return ``(ids, dimension)``."""
    from tqdm.auto import tqdm

    from .imageset import ImageStore
    from .io import parquet_stream

    rep = model if isinstance(model, Representation) else load_representation(model, device)
    store = ImageStore(images)
    with parquet_stream(out, metadata={"embedding_dim": rep.dim, "model": rep.path, "dim": rep.dim}) as write, \
            tqdm(total=len(store), desc="embed", unit="img", disable=not progress, file=sys.stderr,
                 mininterval=5) as bar:
        for pos, images_ in store.batches(max(batch_size, 4096)):
            write(embedding_table(store.ids[pos], rep.embed(images_, batch_size=batch_size)))
            bar.update(len(pos))
    return store.ids, rep.dim


#: galaxies the 2-D map is fitted on (a seeded sample beyond it; the rest are projected into it)
MAP_FIT_ROWS = 50_000


def _fit_map(vectors: np.ndarray, method: str, seed: int):
    """``(fitted 2-D map, its name)``: UMAP when ``umap-learn`` is installed (``auto``/``umap``), else PCA."""
    from sklearn.decomposition import PCA

    if method not in ("auto", "pca", "umap"):
        raise InputError(f"map method {method!r}: choose auto, pca or umap")
    if method in ("auto", "umap") and len(vectors) > 15:
        try:
            import umap  # type: ignore

            return umap.UMAP(n_components=2, random_state=seed).fit(vectors), "umap"
        except ImportError:
            if method == "umap":
                raise InputError("map method 'umap' needs the umap-learn package (pip install umap-learn)") from None
    return PCA(n_components=min(2, vectors.shape[1], len(vectors)), random_state=seed).fit(vectors), "pca"


def _two_columns(xy: np.ndarray) -> np.ndarray:
    return np.pad(xy, ((0, 0), (0, 2 - xy.shape[1]))) if xy.shape[1] < 2 else xy


def embedding_map(vectors: np.ndarray, method: str = "auto", seed: int = 0) -> tuple[np.ndarray, str]:
    """2-D map of the embeddings: UMAP when ``umap-learn`` is installed (``auto``/``umap``), else PCA."""
    fitted, used = _fit_map(vectors, method, seed)
    xy = fitted.embedding_ if used == "umap" else fitted.transform(vectors)
    return _two_columns(xy), used


def map_table(path: str | Path, method: str = "auto", seed: int = 0,
              fit_rows: int = MAP_FIT_ROWS) -> tuple[np.ndarray, np.ndarray, str]:
    """``(ids, xy, method)``: the 2-D map of an embeddings table.  Up to ``fit_rows`` galaxies it is
    :func:`embedding_map` of them all; beyond, the map is fitted on a seeded sample of ``fit_rows``
    and every galaxy is projected into it a batch at a time, so memory holds the sample and N × 2
    coordinates, never the N × D matrix."""
    import pyarrow.parquet as pq

    n = pq.ParquetFile(path).metadata.num_rows
    if n <= fit_rows:
        ids, vectors = read_embeddings(path)
        xy, used = embedding_map(vectors, method, seed) if n else (np.zeros((0, 2), np.float32), "pca")
        return ids, xy, used
    sample = np.random.default_rng(seed).choice(n, fit_rows, replace=False)
    fitted, used = _fit_map(read_embeddings(path, rows=sample)[1], method, seed)
    ids, parts = [], []
    for batch_ids, vectors in iter_embeddings(path):
        ids.append(batch_ids)
        parts.append(_two_columns(fitted.transform(vectors)).astype(np.float32))
    return np.concatenate(ids), np.concatenate(parts), used
