"""The ``classify:`` config block as typed settings: the one place its defaults live.

``config.yaml`` shows these values and the schema checks their types and ranges; a test fails
when either disagrees with this class.  Read when the DAG is built, so it imports no torch.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from .io import InputError
from .settings import amp_mode, options, preset_block

#: keys that say where and how a job runs, not what it computes: never part of a run's identity
RUN_KEYS = ("models", "apply_to", "device", "amp", "threads", "gpu_mem_mb", "runtime", "progress", "processes",
            "nodes")
#: the views a prediction may average over (``classify.tta``): the image, its four rotations by 90°, or
#: those and their mirror images (the dihedral group of the square; galaxies have no up or down)
TTA_VIEWS = (1, 4, 8)


def check_tta(value, where: str) -> int:
    """``value`` as a number of test-time views (:data:`TTA_VIEWS`; an int, not True or 8.0), or one
    InputError that starts with ``where``."""
    if type(value) is not int or value not in TTA_VIEWS:
        raise InputError(f"{where} {value!r} is not one of {', '.join(map(str, TTA_VIEWS))} (views per galaxy)")
    return value


def check_processes(cfg, where: str) -> None:
    """``processes`` and ``nodes`` of a training block: at least one process per node, and a global
    batch that gives every process at least one example."""
    if cfg.processes < 1 or cfg.nodes < 1 or cfg.nodes > cfg.processes:
        raise InputError(f"{where}: processes ({cfg.processes}) and nodes ({cfg.nodes}) must be >= 1, with at "
                         "least one process per node")
    if cfg.batch_size < cfg.processes:
        raise InputError(f"{where}: batch_size ({cfg.batch_size}) is the global batch, shared by the "
                         f"{cfg.processes} processes; it must be at least processes")


@dataclass
class ClassifySettings:
    """Classifiers of the curated cut; laptop scale (the default synthetic run trains both in ~1 min)."""

    preset: str = "default"  # CLASSIFY_PRESETS: what the other keys start from (explicit keys override it)
    models: list = field(default_factory=lambda: ["hiwl", "flat"])  # hiwl runs for the hiwl5 cut only
    backbone: str = "cnn"  # any model of gzmorph.models
    #: side of the curated images, which the classifiers train on; 0: the top-level image_size
    #: (:func:`curated_image_size`)
    image_size: int = 0
    pretrained: str = ""  # a local encoder (folder, safetensors, checkpoint; gzmorph.pretrained); "" = from scratch
    epochs: int = 8
    batch_size: int = 64
    lr: float = 0.05  # SGD, cosine schedule after a linear warm-up
    momentum: float = 0.9
    nesterov: bool = True  # Nesterov momentum (plain momentum when false)
    weight_decay: float = 0.0001
    label_smoothing: float = 0.05  # hiwl only; flat always uses 0
    weighted_sampling: str = "rare"  # hiwl only: rare | always | never
    rare_ratio: float = 0.25  # "rare": a class under this share of the largest class's examples
    #: hiwl only: the fine level (cigar vs edge-on) starts from the trained coarse level's backbone
    #: (a new head), so that its 1.4k galaxies build on features learned from all of them
    fine_from_coarse: bool = True
    #: hiwl only: the fine level calls a galaxy cigar where P(cigar | cigar or edge-on) >= this
    #: (0.5: its argmax); "val": the value of 0.01, 0.02, ..., 0.99 whose whole hierarchy is the most
    #: accurate on the validation split (:func:`gzmorph.classify.choose_fine_threshold`)
    fine_threshold: str | float = 0.5
    #: views of each galaxy whose class probabilities a prediction averages: 1 (the image), 4 (its
    #: rotations by 90°) or 8 (and their mirror images); the model file keeps it (gzmorph.classify.ViewAverage)
    tta: int = 1
    patience: int = 3  # epochs without improvement on validation; 0 = no early stopping
    warmup_epochs: int = 1
    augment: bool | dict = True  # or overrides of gzmorph.augment.AugmentConfig
    model_kwargs: dict = field(default_factory=dict)
    device: str = "auto"  # auto (CUDA if available) | cpu | cuda | cuda:N
    amp: str = "auto"  # mixed precision on GPU: auto (bf16 where supported, else fp16) | bf16 | fp16 | off
    threads: int = 8  # per training process on Slurm; on one machine the processes share them
    gpu_mem_mb: int = 16000  # per training process
    runtime: int = 240  # minutes (Slurm)
    processes: int = 1  # data-parallel training processes, one per GPU (gzmorph.distributed)
    nodes: int = 1  # nodes the processes span (Slurm)
    apply_to: dict = field(default_factory=dict)  # other catalogues to classify: {name: {source, data_dir, ...}}

    @classmethod
    def from_config(cls, given: dict | None, where: str = "classify"):
        """The defaults updated by ``given``; unknown keys and impossible values are one clear error."""
        cfg = options(cls, preset_block(CLASSIFY_PRESETS, given, where), where)
        cfg.amp = amp_mode(cfg.amp, where)
        if cfg.image_size and not 8 <= cfg.image_size <= 512:
            raise InputError(f"{where}.image_size: {cfg.image_size} must be 0 (the top-level image_size) or "
                             "8 to 512 px")
        if cfg.weighted_sampling not in ("rare", "always", "never"):
            raise InputError(f"{where}.weighted_sampling: {cfg.weighted_sampling!r} is not rare, always or never")
        if cfg.fine_threshold != "val" and (isinstance(cfg.fine_threshold, bool) or not isinstance(
                cfg.fine_threshold, (int, float)) or not 0 < cfg.fine_threshold < 1):
            raise InputError(f"{where}.fine_threshold: {cfg.fine_threshold!r} is not 'val' or a number in (0, 1)")
        check_tta(cfg.tta, f"{where}.tta:")
        if not 0 <= cfg.label_smoothing < 1:
            raise InputError(f"{where}.label_smoothing: {cfg.label_smoothing} must be in [0, 1)")
        if cfg.epochs < 1 or cfg.batch_size < 2:
            raise InputError(f"{where}: epochs ({cfg.epochs}) must be >= 1 and batch_size ({cfg.batch_size}) >= 2")
        check_processes(cfg, where)
        return cfg

    def identity(self) -> dict:
        """The settings that determine the trained model file (what a checkpoint must agree on): the
        weights, and how the file predicts (``fine_threshold``, ``tta``)."""
        return {k: v for k, v in asdict(self).items() if k not in RUN_KEYS}


def curated_image_size(config: dict) -> int:
    """The side of the curated images (``curated/images.parquet``): ``classify.image_size`` after
    its preset, or the top-level ``image_size`` where that is 0.  The classifiers train on these
    images; the distillation stage resizes them to ``distill.image_size`` and the report shows them."""
    return ClassifySettings.from_config(config.get("classify")).image_size or int(config["image_size"])


# --------------------------------------------------------------------------- presets
# classify.preset picks one; every other key under `classify:` in the config overrides it.  A preset
# states only what it changes of the defaults above (ClassifySettings, their one source).
CLASSIFY_PRESETS = {
    "default": {},
    # HIWL (Ma et al. 2023, methods.md section 3): EfficientNet-B1 at 240 px, SGD lr 0.005 with plain
    # momentum (the paper names no Nesterov), a cosine schedule (no warm-up), batch 16; momentum 0.9,
    # weight decay 1e-4, label smoothing 0.05, 1/count sampling of the rare class and early stopping
    # are the defaults already (tests/test_presets.py pins the resolved values).  The paper starts both
    # levels from ImageNet weights (fine_from_coarse off): gzmorph never downloads them, so set
    # classify.pretrained to a local copy.
    # Epochs and patience are not in the paper: those of configs/kaggle-hiwl5.yaml.
    "paper": {"backbone": "efficientnet_b1", "image_size": 240, "lr": 0.005, "nesterov": False, "warmup_epochs": 0,
              "batch_size": 16, "epochs": 30, "patience": 8, "fine_from_coarse": False},
}
