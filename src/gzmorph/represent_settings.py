"""The ``represent:`` config block as typed settings: the representation's training options and
resources, and the settings of each downstream task (:class:`~gzmorph.similarity.SimilaritySettings`,
:class:`~gzmorph.anomalies.AnomalySettings`, :class:`~gzmorph.finetune.FinetuneSettings`).

Read when the DAG is built (workflow/rules/represent.smk), so it imports no torch.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from .anomalies import AnomalySettings
from .finetune import FinetuneSettings
from .settings import options
from .similarity import SimilaritySettings

#: The keys of :class:`RepresentSettings` that are options of ``gzmorph.represent.train_representation``
#: as they are (``pretrained``, ``patience`` and ``seed`` are translated by :func:`workflow_options`).
TRAIN_KEYS = ("backbone", "model_kwargs", "epochs", "batch_size", "lr", "weight_decay", "val_fraction",
              "augment", "n_volunteers", "sum_tolerance", "device", "amp")
TASKS = {"similarity": SimilaritySettings, "anomalies": AnomalySettings, "finetune": FinetuneSettings}


@dataclass
class RepresentSettings:
    """The ``represent:`` config block; laptop scale: the synthetic default run's whole stage takes
    about 2.5 minutes on 2 CPU cores."""

    backbone: str = "cnn"
    model_kwargs: dict = field(default_factory=dict)
    pretrained: str = ""  # empty: random initial weights
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
    threads: int = 2
    gpu_mem_mb: int = 16000
    runtime: int = 240
    embed_batch_size: int = 256
    map_method: str = "auto"
    similarity: SimilaritySettings = field(default_factory=SimilaritySettings)
    anomalies: AnomalySettings = field(default_factory=AnomalySettings)
    finetune: FinetuneSettings = field(default_factory=FinetuneSettings)

    @classmethod
    def from_config(cls, given: dict | None) -> "RepresentSettings":
        """The defaults updated by the keys of the ``represent:`` block (and of its task blocks)."""
        given = dict(given or {})
        tasks = {k: options(c, given.pop(k, None) or {}, f"represent.{k}") for k, c in TASKS.items()}
        return options(cls, {**given, **tasks}, "represent")


def workflow_options(given: dict | None, seed: int = 0) -> tuple[dict, dict]:
    """The ``represent:`` config over the defaults of :class:`RepresentSettings` as a plain dict (what
    the rules read), and the keyword arguments of ``train_representation`` it implies."""
    rep = RepresentSettings.from_config(given)
    opts = {k: getattr(rep, k) for k in TRAIN_KEYS}
    opts["pretrained"] = rep.pretrained or None
    opts["patience"] = rep.patience or None
    opts["seed"] = int(seed)
    return asdict(rep), opts
