"""Expert trajectories for dataset distillation: data, expert training, expert files.

* :func:`load_data`: the train and test splits of the curated catalogue at the
  distillation image size (uint8), with normalisation statistics and an
  optional ZCA whitening matrix; :meth:`Data.transform` is their input pipeline
  (:func:`gzmorph.augment.make_transform`: normalisation, ZCA, DSA single-mode
  augmentation by default), shared by the experts, the distillation and the
  evaluation.  :func:`step_generator` seeds
  one augmentation draw per distillation step.
* :func:`train_expert` trains one ConvNet (``convnet_d3`` of
  :mod:`gzmorph.models`) with :func:`gzmorph.train.fit` (plain SGD) and saves
  its flat parameters (:mod:`gzmorph.student`) after every epoch; it resumes
  after a kill.

Expert file (``experts/<name>.pt``): ``{"format", "trajectory": (E+1)×P float32
tensor (epoch 0 = initial weights), "history": per-epoch rows, "meta": model
config, classes, image size, normalisation, data fingerprint, ...}``, a safetensors
file (:func:`gzmorph.io.save_bundle`: the trajectory as its weight, the rest as a
JSON header).  The work folder's ``trajectory.pt`` and fit's ``last.pt`` are read
weights-only.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from . import augment as aug
from .codedeps import package_hash
from .distill_settings import DistillSettings, ExpertConfig
from .io import InputError, atomic_path, save_bundle
from .models import build_convnet
from .student import flat_params

EXPERT_FORMAT = "gzmorph.expert/1"
# meta keys that must agree between an expert and the distillation that uses it
COMPAT_KEYS = ("model_config", "classes", "image_size", "fingerprint", "zca")
log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- data


@dataclass
class Data:
    classes: list
    x_train: torch.Tensor  # uint8 N×H×W×3 at ``image_size``
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    mean: list
    std: list
    image_size: int
    fingerprint: str
    zca: aug.Whitening | None = None  # ZCA whitening of the normalised images (the training split's)
    x_val: torch.Tensor | None = None  # the validation split (the full-data baseline stops on it)
    y_val: torch.Tensor | None = None

    def class_counts(self) -> list[int]:
        return torch.bincount(self.y_train, minlength=len(self.classes)).tolist()

    def transform(self, augment=DistillSettings.augment, cutout: float = DistillSettings.cutout) -> aug.BatchTransform:
        """The input pipeline of this data: normalisation and ZCA of the training split and the
        augmentation ``augment`` (:func:`gzmorph.augment.make_transform`: DSA single mode by default,
        ``{"mode": "all", ...}`` every op plus a ``cutout`` square, ``False`` none)."""
        return aug.make_transform(self.mean, self.std, augment, cutout, self.zca)


def resize_uint8(images: np.ndarray, size: int) -> np.ndarray:
    """Area-resize uint8 N×H×W×3 images to ``size`` px (no-op when already that size)."""
    if images.shape[1] == size and images.shape[2] == size:
        return np.ascontiguousarray(images)
    if size > images.shape[1]:
        raise InputError(f"distill.image_size {size} is larger than the curated images ({images.shape[1]} px)")
    out = []
    for i in range(0, len(images), 512):
        x = torch.from_numpy(np.ascontiguousarray(images[i:i + 512])).permute(0, 3, 1, 2).float()
        x = F.interpolate(x, size=(size, size), mode="area")
        out.append(x.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy())
    return np.concatenate(out) if out else np.zeros((0, size, size, 3), np.uint8)


def fit_zca(x: torch.Tensor, reg: float = 0.1, prepare=None, batch_size: int = 4096) -> aug.Whitening:
    """ZCA whitening of normalised float images N×C×H×W (or of ``prepare(batch)`` of each batch of
    ``x``, e.g. uint8 images normalised on the fly): their mean image (D) and the matrix
    U (Λ + reg)^-1/2 Uᵀ of their covariance (kornia-style regulariser).  Two passes over batches
    (the mean, then the centred D×D sum of products), so memory is D² plus one batch, not a float64
    copy of the split."""
    def flat_batches():
        for i in range(0, len(x), batch_size):
            b = x[i:i + batch_size]
            yield (prepare(b) if prepare else b).reshape(len(b), -1).double()

    total = None
    for f in flat_batches():
        total = f.sum(0) if total is None else total + f.sum(0)
    mean = total / max(1, len(x))
    cov = torch.zeros(len(mean), len(mean), dtype=torch.float64)
    for f in flat_batches():
        f = f - mean
        cov.addmm_(f.T, f)
    cov /= max(1, len(x) - 1)
    evals, evecs = torch.linalg.eigh(cov)
    w = evecs @ torch.diag(1.0 / torch.sqrt(evals.clamp_min(0) + reg)) @ evecs.T
    return aug.Whitening(w.float(), mean.float())


def read_resized(store, ids, size: int, batch_size: int = 1024) -> np.ndarray:
    """The images of ``ids`` from an open :class:`gzmorph.imageset.ImageStore`, area-resized to
    ``size`` px a batch at a time: only ``len(ids)`` images at ``size`` px are ever held whole, never
    the curated ones (a 240 px store distilled at 16 px holds 1/225 of its pixels)."""
    rows = store.rows_of(np.asarray(ids))
    out = np.empty((len(rows), size, size, 3), np.uint8)
    for pos, img in store.batches(batch_size, rows):
        out[pos] = resize_uint8(img, size)
    return out


def load_data(catalogue, images, image_size: int = DistillSettings.image_size, zca: bool = DistillSettings.zca,
              zca_reg: float = 0.1) -> Data:
    """Train and test splits (and the validation split, where it has galaxies) of the curated
    catalogue at ``image_size`` px, with normalisation stats.

    The one stage that holds its splits in memory, at the distillation size (16-64 px: 0.08 GB for
    100,000 galaxies at 16 px, 1.2 GB at 64 px), since every distillation step samples real images of any class;
    they are read and shrunk a batch at a time (:func:`read_resized`)."""
    from .augment import channel_stats
    from .curate import read_catalogue
    from .imageset import ImageStore, content_hash
    from .train import fingerprint

    df, classes = read_catalogue(catalogue)
    if int(image_size) < 8:
        raise InputError(f"distill.image_size must be at least 8 px, not {image_size}")
    store = ImageStore(images)
    parts = {}
    for split in ("train", "test"):
        sub = df[df["split"] == split]
        if len(sub) == 0:
            raise InputError(f"{catalogue}: no galaxies in the {split} split")
        parts[split] = (torch.from_numpy(read_resized(store, sub["id"].to_numpy(), int(image_size))),
                        torch.as_tensor(sub["label"].to_numpy().copy(), dtype=torch.long))
    x_tr, y_tr = parts["train"]
    mean, std = channel_stats(x_tr)
    # what the experts are trained on: ids, labels, pixels, size and classes (train.fingerprint)
    data_id = fingerprint(df[df["split"] == "train"]["id"].to_numpy(), y_tr.numpy(), content_hash(images),
                          [int(image_size), list(classes)])
    data = Data(list(classes), x_tr, y_tr, *parts["test"], mean, std, int(image_size), data_id)
    val = df[df["split"] == "val"]
    if len(val):
        data.x_val = torch.from_numpy(read_resized(store, val["id"].to_numpy(), int(image_size)))
        data.y_val = torch.as_tensor(val["label"].to_numpy().copy(), dtype=torch.long)
    if zca:
        data.zca = fit_zca(x_tr, zca_reg, prepare=lambda b: aug.normalize(aug.to_float(b), mean, std))
    return data


def step_generator(seed: int, iteration: int, step: int = 0, device="cpu") -> torch.Generator:
    """The generator of one augmentation draw, seeded by (seed, iteration, step)."""
    s = (int(seed) * 1_000_003 + int(iteration) * 7_919 + int(step) * 104_729 + 1) % (2 ** 63 - 1)
    return torch.Generator(device=device).manual_seed(s)


def accuracy(logits: torch.Tensor, y: torch.Tensor) -> float:
    return float((logits.argmax(1) == y.to(logits.device)).float().mean()) if len(y) else float("nan")


def balanced_accuracy(logits: torch.Tensor, y: torch.Tensor) -> float:
    """The mean over the classes present in ``y`` of their recall."""
    y = y.to(logits.device)
    hit = (logits.argmax(1) == y).float()
    recalls = [hit[y == c].mean() for c in torch.unique(y)]
    return float(torch.stack(recalls).mean()) if recalls else float("nan")


# --------------------------------------------------------------------------- experts


def expert_seed(seed: int, index: int) -> int:
    return int(seed) * 7_777 + 1_000 * int(index) + 3


def _trajectory_so_far(work: Path, meta: dict, epochs: int, initial: torch.Tensor, train_accuracy, device,
                       build) -> tuple:
    """The trajectory and history rows so far, consistent with fit's own checkpoint (``last.pt``):
    ``[initial], []`` without one; a checkpoint of other settings, or one that cannot be read
    weights-only (truncated, foreign, crafted to run code), is removed (training from scratch)."""
    from .io import one_line
    from .train import read_checkpoint

    last, traj_path = work / "last.pt", work / "trajectory.pt"
    if not last.exists():
        return [initial], []
    try:  # both weights-only: tensors and plain values, never code
        ck = read_checkpoint(last)
        done = int(ck["state"]["epoch"])
        saved = read_checkpoint(traj_path) if traj_path.exists() else None
    except Exception as err:  # noqa: BLE001 - a truncated, foreign or crafted file
        log.warning("%s: unreadable checkpoint or trajectory (%s); training from scratch", work, one_line(err))
        last.unlink()
        return [initial], []
    if (not isinstance(saved, dict) or saved.get("meta") != meta or not torch.is_tensor(saved.get("trajectory"))
            or len(saved["trajectory"]) < done):
        # another model, data or setting (lr, batch size, augmentation, seed): never continue it
        log.warning("%s: checkpoint of other settings or without a matching trajectory; training from scratch",
                    work)
        last.unlink()
        return [initial], []
    if done > epochs:  # a run of more epochs, killed after this run's last one: nothing left to train
        log.warning("%s: checkpoint after epoch %d of a longer run than this one's %d epochs; training from scratch",
                    work, done, epochs)
        last.unlink()
        return [initial], []
    traj, rows = list(saved["trajectory"][:done + 1]), saved["history"][:done]
    if len(traj) == done:  # killed between fit's checkpoint and the trajectory save
        m = build()
        m.load_state_dict(ck["model"])
        traj.append(flat_params(m))
        row = dict(ck["state"]["history"][-1])
        rows.append({"epoch": done, "train_loss": row.get("train_loss"), "train_accuracy": train_accuracy(m.to(device)),
                     "test_accuracy": row.get("val_accuracy"),
                     "test_balanced_accuracy": row.get("val_balanced_accuracy"), "seconds": row.get("seconds")})
    return traj, rows


def expert_loss(data: Data, class_weighted: bool, device):
    """The experts' cross-entropy; ``class_weighted``: each class weighted by N / (K · its count), so
    that every class weighs the same in an epoch, as Guan et al.'s experts on imbalanced cuts."""
    if not class_weighted:
        return F.cross_entropy
    counts = torch.tensor(data.class_counts(), dtype=torch.float32).clamp_min(1)
    weight = (counts.sum() / (len(counts) * counts)).to(device)
    return lambda out, y: F.cross_entropy(out, y, weight=weight.to(out.device))


def _build(data: Data, cfg: ExpertConfig):
    """A fresh expert ConvNet for ``data`` with ``cfg``'s model options."""
    return build_convnet(len(data.classes), data.image_size, cfg.width, cfg.depth, cfg.norm)


def _fit_as_expert(model, data: Data, cfg: ExpertConfig, transform, device, *, epochs: int, seed: int, val=None,
                   **kw):
    """Train ``model`` on the training split as every expert is trained: plain SGD at ``cfg.lr`` (no
    momentum, no weight decay), ``cfg``'s batch size and loss, the input pipeline ``transform``."""
    from .train import fit

    return fit(model, expert_loss(data, cfg.class_weighted, device), (data.x_train, data.y_train), val,
               epochs=epochs, batch_size=cfg.batch_size, seed=seed,
               optimizer=lambda p: torch.optim.SGD(p, lr=cfg.lr, momentum=0.0, weight_decay=0.0),
               transform=transform, restore_best=False, device=device, amp=False, **kw)


def train_expert(data: Data, out_path, cfg: ExpertConfig, *, index: int = 0, work_dir=None,
                 history_path=None, progress: bool = False) -> dict:
    """Train one expert; save its parameters after every epoch (resumable); write ``out_path``."""
    from .train import discard_checkpoints, pick_device, predict_tensor, write_table

    out_path = Path(out_path)
    work = Path(work_dir) if work_dir else out_path.with_suffix(".work")
    work.mkdir(parents=True, exist_ok=True)
    traj_path = work / "trajectory.pt"
    seed = expert_seed(cfg.seed, index)
    torch.manual_seed(seed)
    build = partial(_build, data, cfg)
    model = build()
    mcfg = cfg.model_config(len(data.classes), data.image_size)
    meta = {"model": "convnet_d3", "model_config": mcfg, "classes": data.classes,
            "fingerprint": data.fingerprint, "image_size": data.image_size, "mean": data.mean,
            "std": data.std, "zca": data.zca is not None, "lr": cfg.lr, "batch_size": cfg.batch_size,
            "augment": cfg.augment, "cutout": cfg.cutout, "seed": seed, "index": index,
            "class_weighted": cfg.class_weighted, "code_version": package_hash()}
    transform = data.transform(cfg.augment, cfg.cutout)
    device = pick_device(cfg.device)
    n_eval = min(len(data.x_train), cfg.train_eval_images)
    eval_idx = torch.randperm(len(data.x_train), generator=torch.Generator().manual_seed(seed))[:n_eval]

    def test_metrics(out, y):
        return {"accuracy": accuracy(out, y), "balanced_accuracy": balanced_accuracy(out, y)}

    def train_accuracy(m):
        out = predict_tensor(m, data.x_train[eval_idx], transform, device=device, amp=False)
        m.train()
        return accuracy(out, data.y_train[eval_idx])

    traj, rows = _trajectory_so_far(work, meta, cfg.epochs, flat_params(model), train_accuracy, device, build)
    last = work / "last.pt"

    def save_traj():
        with atomic_path(traj_path) as tmp:
            torch.save({"trajectory": torch.stack(traj), "history": rows, "meta": meta}, tmp)

    if not last.exists():
        save_traj()

    def on_epoch_end(epoch, row, m):
        traj.append(flat_params(m))
        rows.append({"epoch": epoch, "train_loss": row["train_loss"], "train_accuracy": train_accuracy(m),
                     "test_accuracy": row.get("val_accuracy"),
                     "test_balanced_accuracy": row.get("val_balanced_accuracy"), "seconds": row["seconds"]})
        save_traj()

    _fit_as_expert(model, data, cfg, transform, device, epochs=cfg.epochs, seed=seed, val=(data.x_test, data.y_test),
                   metrics_fn=test_metrics, checkpoint_dir=work, meta=meta, progress=progress,
                   on_epoch_end=on_epoch_end)
    if len(traj) != cfg.epochs + 1:
        raise RuntimeError(f"expert {index}: trajectory has {len(traj) - 1} epochs, expected {cfg.epochs}")
    result = {"format": EXPERT_FORMAT, "trajectory": torch.stack(traj), "history": rows, "meta": meta}
    save_bundle(out_path, result, EXPERT_FORMAT)  # safetensors: the trajectory + a JSON header
    if history_path:
        write_table(Path(history_path), rows)
    discard_checkpoints(work)  # the trajectory is written: only an unfinished expert is ever resumed
    return result


def segment_noise(data: Data, expert: dict, cfg: ExpertConfig, start: int, epochs: int, *, seed: int = 1) -> float:
    """How much of one trajectory segment is SGD noise: the share of θ_{t+M} − θ_t that another
    draw of the data order and augmentation would change.

    From the expert's θ_t (``start``), train ``epochs`` (M) epochs again with the expert's settings
    (``cfg``) but another seed, giving d' beside the saved d = θ_{t+M} − θ_t, and return
    ``‖d' − d‖² / (‖d‖² + ‖d'‖²)``: 0 when the segment is deterministic, 1 when the two draws are
    uncorrelated.  This is the noise in the target a matching step chases (MTT, STM).
    """
    from .student import load_flat
    from .train import pick_device

    traj = expert["trajectory"]
    if not (0 <= start and start + epochs < len(traj)):
        raise InputError(f"segment {start}+{epochs} is outside the expert's {len(traj) - 1} epochs")
    device = pick_device(cfg.device)
    model = load_flat(_build(data, cfg), traj[start].clone())
    _fit_as_expert(model, data, cfg, data.transform(cfg.augment, cfg.cutout), device, epochs=epochs,
                   seed=expert_seed(seed, 10_000 + start), progress=False)
    d = traj[start + epochs] - traj[start]
    d_other = flat_params(model) - traj[start]
    return float((d_other - d).pow(2).sum() / (d.pow(2).sum() + d_other.pow(2).sum()).clamp_min(1e-30))


def load_expert(path, *, expect: dict | None = None, min_epochs: int = 0) -> dict:
    """Read an expert file; clear ``InputError`` if it is missing, too short or from another set-up."""
    from .io import load_bundle

    path = Path(path)
    ex = load_bundle(path, EXPERT_FORMAT, "expert trajectory", " (run the train_expert rule first)")
    epochs = len(ex["trajectory"]) - 1
    if epochs < min_epochs:
        raise InputError(f"{path}: the expert has {epochs} epochs but {min_epochs} are needed "
                         "(max_start_epoch + expert_epochs); train longer experts or lower those")
    if expect:
        meta = ex["meta"]
        for k in COMPAT_KEYS:
            if k in expect and meta.get(k) != expect[k]:
                raise InputError(f"{path}: trajectory from another set-up: {k} is {meta.get(k)!r}, "
                                 f"this run needs {expect[k]!r}")
    return ex


def expected_meta(data: Data, model_config: dict) -> dict:
    return {"model_config": model_config, "classes": data.classes, "image_size": data.image_size,
            "fingerprint": data.fingerprint, "zca": data.zca is not None}


__all__ = ["COMPAT_KEYS", "Data", "ExpertConfig", "accuracy", "balanced_accuracy", "expected_meta", "load_data",
           "load_expert", "resize_uint8", "segment_noise", "step_generator", "train_expert", "fit_zca"]
