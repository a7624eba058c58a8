"""The ``represent:`` config block as typed settings, the one place its defaults live: the
representation's training options and resources, and the settings of each downstream task
(similarity search, anomalies, fine-tuning), which their modules import from here.

Read when the DAG is built (workflow/rules/represent.smk), so it imports no torch.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from .io import InputError
from .settings import amp_mode, options, preset_block

ARMS = ("frozen", "finetuned", "scratch")  # the fine-tuning arms


@dataclass
class SimilaritySettings:
    """The ``represent.similarity`` config block."""

    n_components: int = 10
    k: int = 10
    #: empty: the most confident galaxy of each curated class (:func:`default_queries`)
    query_ids: list[int | str] = field(default_factory=list)  # ids as the catalogue has them


@dataclass
class AnomalySettings:
    """The ``represent.anomalies`` config block."""

    n_components: int = 40
    threshold: float = 0.9  # anomaly = odd fraction (Class6.1) above this
    initial: int = 10
    batch: int = 10
    budget: int = 200  # labels asked of the simulated user
    seeds: int = 2
    astronomaly_alpha: float = 1.0  # Astronomaly's trust radius, in median nearest-neighbour spacings


@dataclass
class FinetuneSettings:
    """The ``represent.finetune`` config block: which galaxies are rings, the label budgets, and
    how the arms train."""

    #: the task: ``rings`` (the ring rule below), ``class`` (the curated cut's classes) or a column of the
    #: source catalogue (categories; a fractional column needs ``threshold``)
    label: str = "rings"
    threshold: float | None = None  # a fractional label column: class 1 at or above it
    ring_min: float = 0.25
    not_ring_max: float = 0.05
    min_odd: float = 0.3
    min_face_on: float = 0.5
    #: ``auto``: ``min_budget x budget_factor^i <= max_budget`` (see :func:`plan_budgets`), or a list
    budgets: str | list[int] = "auto"
    min_budget: int = 8
    max_budget: int = 256
    budget_factor: float = 4
    test_fraction: float = 0.3
    seeds: int = 1
    steps: int = 30  # optimiser steps of the image arms (fine-tuned, from scratch)
    head_steps: int = 200  # optimiser steps of the linear head on the frozen representation
    batch_size: int = 32
    lr: float = 0.001  # from-scratch model and the new head of the fine-tuned arm
    lr_finetune: float = 0.0003  # the backbone of the fine-tuned representation
    lr_head: float = 0.01  # the linear head on the frozen representation
    augment: bool | dict = True
    arms: list[str] = field(default_factory=lambda: list(ARMS))

    def describe_rings(self) -> str:
        """The ring / not-ring rule in words."""
        return (f"featured face-on galaxies (Class2.2 >= {self.min_face_on}); ring: Class6.1 >= {self.min_odd} "
                f"and ring share of the odd votes Class8.1/Class6.1 > {self.ring_min}; not ring: "
                f"Class8.1/Class6.1 < {self.not_ring_max} (0 where nobody called it odd)")

#: The keys of :class:`RepresentSettings` that are options of ``gzmorph.represent.train_representation``
#: as they are (``pretrained``, ``patience`` and ``seed`` are translated by :func:`workflow_options`).
TRAIN_KEYS = ("backbone", "image_size", "greyscale", "model_kwargs", "epochs", "batch_size", "lr", "weight_decay",
              "val_fraction", "augment", "n_volunteers", "sum_tolerance", "device", "amp")
TASKS = {"similarity": SimilaritySettings, "anomalies": AnomalySettings, "finetune": FinetuneSettings}


@dataclass
class RepresentSettings:
    """The ``represent:`` config block; laptop scale: the synthetic default run's whole stage takes
    under a minute of job time on 2 CPU cores (47 s in one run)."""

    preset: str = "default"  # REPRESENT_PRESETS: what the other keys start from (explicit keys override it)
    backbone: str = "cnn"
    #: side of the representation's images (represent/images.parquet); 0: the top-level image_size
    #: (:func:`representation_image_size`)
    image_size: int = 0
    #: the input as one grey channel, the unweighted mean of R, G and B (Zoobot), repeated to the
    #: backbone's 3 input channels; recorded in the model file, so embedding applies it too
    greyscale: bool = False
    model_kwargs: dict = field(default_factory=dict)
    pretrained: str = ""  # empty: random initial weights
    #: a representation trained elsewhere (a gzmorph representation model file): used as it is, nothing is
    #: trained; embedding and similarity then run on any images, with or without vote fractions
    model: str = ""
    epochs: int = 2
    batch_size: int = 64
    lr: float = 0.002
    weight_decay: float = 0.0001
    val_fraction: float = 0.1
    patience: int = 0  # 0: no early stopping
    augment: bool | dict = True
    n_volunteers: int = 40
    sum_tolerance: float = 0.02
    device: str = "auto"
    amp: str = "auto"
    threads: int = 2  # as classify.threads
    gpu_mem_mb: int = 16000  # per training process
    runtime: int = 240
    processes: int = 1  # data-parallel training processes, one per GPU (gzmorph.distributed)
    nodes: int = 1  # nodes the processes span (Slurm)
    embed_batch_size: int = 256
    map_method: str = "auto"
    similarity: SimilaritySettings = field(default_factory=SimilaritySettings)
    anomalies: AnomalySettings = field(default_factory=AnomalySettings)
    finetune: FinetuneSettings = field(default_factory=FinetuneSettings)

    @classmethod
    def from_config(cls, given: dict | None) -> "RepresentSettings":
        """The defaults updated by the keys of the ``represent:`` block (and of its task blocks)."""
        from .classify_settings import check_processes

        given = preset_block(REPRESENT_PRESETS, given, "represent")
        tasks = {k: options(c, given.pop(k, None) or {}, f"represent.{k}") for k, c in TASKS.items()}
        rep = options(cls, {**given, **tasks}, "represent")
        rep.amp = amp_mode(rep.amp, "represent")
        if rep.image_size and not 8 <= rep.image_size <= 512:
            raise InputError(f"represent.image_size: {rep.image_size} must be 0 (the top-level image_size) or "
                             "8 to 512 px")
        check_processes(rep, "represent")
        return rep


def representation_image_size(config: dict) -> int:
    """The side of the representation's images (``represent/images.parquet``, and what an imported
    ``represent.model`` must take): ``represent.image_size`` after its preset, or the top-level
    ``image_size`` where that is 0."""
    return RepresentSettings.from_config(config.get("represent")).image_size or int(config["image_size"])


def representation_crop(config: dict) -> float:
    """The crop of the representation's images: ``represent.model``'s own, as its file records it
    (the images it was trained on; what the console commands use too), else ``crop_fraction``."""
    model = (config.get("represent") or {}).get("model")
    if model:
        from .io import bundle_header

        bundle = (bundle_header(model) or {}).get("bundle") or {}
        crop = (bundle.get("preprocess") or {}).get("crop_fraction") if isinstance(bundle, dict) else None
        if isinstance(crop, (int, float)) and not isinstance(crop, bool) and 0 < crop <= 1:
            return float(crop)
    return float(config["crop_fraction"])


# represent.preset picks one; every other key under `represent:` overrides it.  A preset states only
# what it changes of the defaults above (RepresentSettings, their one source).
REPRESENT_PRESETS = {
    "default": {},
    # Zoobot (Walmsley et al. 2022, methods.md section 2): EfficientNet-B0 at 224 px on greyscale images.
    # Epochs are not in methods.md: 15, what config.yaml suggests for real catalogues.
    "paper": {"backbone": "efficientnet_b0", "image_size": 224, "greyscale": True, "epochs": 15},
}


def workflow_options(given: dict | None, seed: int = 0) -> tuple[dict, dict]:
    """The ``represent:`` config over the defaults of :class:`RepresentSettings` as a plain dict (what
    the rules read), and the keyword arguments of ``train_representation`` it implies."""
    rep = RepresentSettings.from_config(given)
    opts = {k: getattr(rep, k) for k in TRAIN_KEYS}
    opts["pretrained"] = rep.pretrained or None
    opts["patience"] = rep.patience or None
    opts["seed"] = int(seed)
    check_map_method(rep.map_method)
    return asdict(rep), opts


def check_map_method(method: str) -> None:
    """``represent.map_method`` checked when the DAG is built: ``umap`` without the umap-learn package
    is one error, not a failed job after training.  ``auto`` stays ``auto``: the embed job makes a UMAP
    map where its own environment has umap-learn (with ``--sdm conda`` that is the job's environment,
    not this one), else PCA, and records which (``embed/map.parquet``, the report)."""
    from importlib.util import find_spec

    if method == "umap" and find_spec("umap") is None:
        raise InputError("represent.map_method: umap needs the umap-learn package, which this environment lacks "
                         "(pip install 'gzmorph[umap]'); or choose pca")
