"""The ``distill:`` config block as typed settings: the one place the stage's defaults live.

:class:`DistillSettings` is the ``distill:`` config block; its defaults *are* the "default"
preset (:func:`default_preset`, which :data:`DISTILL_PRESETS` uses; the other presets
state what they change of it).  Its nested blocks are the options of one part of the stage:
``expert`` (:class:`ExpertTraining`), ``mtt`` (:class:`MTTOptions`), ``stm`` (:class:`STMOptions`:
the shared method keys plus the schedule's, :class:`STMConfig`) and ``eval`` (:class:`EvalOptions`).

The run configurations extend them with what a run also needs, taking their defaults from the
classes above: :class:`ExpertConfig` (``train_expert``), :class:`DistillConfig` (``distill``) and
:class:`EvalConfig` (the evaluation), which :mod:`gzmorph.experts`, :mod:`gzmorph.distill` and
:mod:`gzmorph.distill_eval` export.

Standard library only: this module is read when the DAG is built.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

from .io import InputError
from .settings import deep_merge

METHODS = ("mtt", "stm")
MEMORY_MODES = ("constant", "store", "unroll", "auto")
DISTILL_AMP = ("off", "bf16")  # the student's forward pass: float32, or under bf16 autocast
ALPHA_PARAMS = ("direct", "log")  # learn α itself (MTT) or log α (Guan et al.'s code)


# --------------------------------------------------------------------------- the blocks of `distill:`


@dataclass
class ExpertTraining:
    """``distill.expert``: how every expert is trained (plain SGD, no momentum)."""

    epochs: int = 4
    lr: float = 0.01
    batch_size: int = 32
    class_weighted: bool = False  # weight the loss by 1 / class count (Guan et al.'s experts, imbalanced cuts)


@dataclass
class MethodOptions:
    """The options ``distill.mtt`` and ``distill.stm`` share."""

    syn_steps: int = 8  # N: student steps per iteration
    iterations: int = 30  # MTT: iterations; STM: an upper bound
    lr_img: float = 100.0
    lr_alpha: float = 1e-5
    alpha0: float = 0.01  # initial student step size α
    batch_syn: int = 0  # synthetic images per student step; 0 = all
    alpha_param: str = "direct"  # "direct": SGD on α (MTT); "log": on log α (Guan et al.; α stays > 0)


@dataclass
class MTTOptions(MethodOptions):
    """``distill.mtt``."""

    expert_epochs: int = 2  # M (STM uses 1)
    max_start_epoch: int = 2  # T+: start epochs are drawn from [0, T+)


@dataclass
class STMConfig:
    """The self-adaptive schedule of STM (:class:`gzmorph.stm.STMSchedule`)."""

    check_every: int = 10  # iterations between trend tests
    r_down: float = 5.0  # r < -r_down·σ: significant decrease -> cap + 1
    r_up: float = 3.0  # r > r_up·σ: significant increase -> cap + 1
    patience: int = 20  # a check after more than this many iterations of a stage -> fine-tuning
    ft_every: int = 5  # fine-tuning: image lr × ft_factor at every iteration index divisible by this
    ft_factor: float = 0.8
    lr_floor: float = 60.0  # stop when the image lr falls below this
    alpha_per_epoch: bool = False  # one learned α per start epoch (piecewise schedule at evaluation);
    # a new epoch's α starts as a copy of the last one, and every α's lr is lr_alpha × cap


@dataclass
class STMOptions(STMConfig, MethodOptions):
    """``distill.stm``: the shared method options and the schedule's, in one flat block."""

    iterations: int = 40


@dataclass
class EvalOptions:
    """``distill.eval``: fresh ConvNets trained on a synthetic set (or a baseline), tested on the test split."""

    n_nets: int = 2
    epochs: int = 80
    batch_size: int = 256
    baseline_lr: float = 0.01  # lr for the random / mean baselines
    full_epochs: int = 4  # at most; the best epoch on the validation split is kept (full_patience)
    full_lr: float = 0.01
    full_batch_size: int = 64
    full_patience: int = 5  # epochs without a better validation accuracy before the full baseline stops


@dataclass
class DistillSettings:
    """The ``distill:`` config block; its defaults are the "default" preset."""

    methods: list = field(default_factory=lambda: list(METHODS))
    ipc: list = field(default_factory=lambda: [1])
    n_experts: int = 2
    image_size: int = 16
    width: int = 16  # ConvNet-D3 of the experts and the students
    depth: int = 3
    norm: str = "instance"
    zca: bool = False
    augment: bool | dict = True  # gzmorph.augment.make_transform: True = DSA single mode; {"mode": "all"} the old
    # every-op augmentation (AugmentConfig keys) + a cutout square; False none
    cutout: float = 0.5  # the cutout square's side / image side (DSA's ratio_cutout in single mode)
    memory: str = "auto"  # gzmorph.matching: constant | store | unroll | auto (from memory_budget_mb)
    memory_budget_mb: int = 0  # memory: auto: what one distillation may use; 0 = what the device has
    leaf: int = 4
    amp: str = "off"  # the student steps' forward pass: off (float32) | bf16 (autocast; speed and gradient error
    # measured in docs/results.md; memory: auto plans bf16 steps as float32 ones, whose graphs are larger)
    channels_last: bool = False  # the student's images and conv weights in channels-last format (no gain on CPU)
    keep_freed_memory: bool = False  # the distill job keeps freed memory for its next tensors (gzmorph.allocator:
    # glibc without mmap or trim, torch's huge pages): 0.5-0.7x the time at width 128 on 2 CPU cores, at a higher
    # peak RSS, but slower at the laptop preset's width 32 and 16 px (docs/results.md); on in "paper"
    device: str = "auto"
    threads: int = 2
    gpu_mem_mb: int = 8000
    runtime: int = 60
    expert: ExpertTraining = field(default_factory=ExpertTraining)
    mtt: MTTOptions = field(default_factory=MTTOptions)
    stm: STMOptions = field(default_factory=STMOptions)
    ipc_overrides: dict = field(default_factory=dict)  # {ipc: method options that replace the block's}
    eval: EvalOptions = field(default_factory=EvalOptions)


def default_preset() -> dict:
    """The "default" preset: the defaults of :class:`DistillSettings` as a nested dict."""
    return asdict(DistillSettings())


def check_amp(amp) -> str:
    """``distill.amp`` as one of :data:`DISTILL_AMP` (an unquoted YAML ``off`` reads as ``false``)."""
    amp = "off" if amp is False else amp
    if amp not in DISTILL_AMP:
        raise InputError(f"distill.amp: {amp!r} is not one of {list(DISTILL_AMP)}")
    return amp


# --------------------------------------------------------------------------- run configurations


@dataclass
class ExpertConfig(ExpertTraining):
    """One expert's training run: ``distill.expert`` and the stage's model and input options."""

    width: int = DistillSettings.width
    depth: int = DistillSettings.depth
    norm: str = DistillSettings.norm
    augment: bool | dict = DistillSettings.augment
    cutout: float = DistillSettings.cutout
    seed: int = 0
    device: str = DistillSettings.device
    train_eval_images: int = 1024  # train accuracy per epoch on this many (fixed) training images

    def model_config(self, n_classes: int, image_size: int) -> dict:
        return {"name": "convnet_d3", "num_classes": int(n_classes), "image_size": int(image_size),
                "width": int(self.width), "depth": int(self.depth), "norm": self.norm}


@dataclass
class DistillConfig(MTTOptions):
    """One distillation run: a method's options (``distill.mtt`` or ``distill.stm``) and the stage's."""

    method: str = "mtt"
    ipc: int = 1
    momentum: float = 0.5
    memory: str = DistillSettings.memory
    memory_budget_mb: int = DistillSettings.memory_budget_mb
    leaf: int = DistillSettings.leaf
    amp: str = DistillSettings.amp
    channels_last: bool = DistillSettings.channels_last
    alpha_max: float = 1.0  # a larger learned α rolls the iteration back
    max_rollbacks: int = 20
    seed: int = 0
    device: str = DistillSettings.device
    stm: STMConfig = field(default_factory=STMConfig)

    def __post_init__(self):
        self.amp = check_amp(self.amp)
        if not isinstance(self.channels_last, bool):
            raise InputError(f"distill.channels_last: {self.channels_last!r} is not true or false")

    @classmethod
    def from_dict(cls, d: dict) -> DistillConfig:
        """From a flat dict: a method block as the config has it (the STM schedule's keys beside the
        others, as in ``distill.stm``) plus the run's keys; a nested ``stm`` dict is read too."""
        d = dict(d)
        stm = dict(d.pop("stm", {}))
        stm.update({f.name: d.pop(f.name) for f in fields(STMConfig) if f.name in d})
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise InputError(f"distill: unknown option(s) {sorted(unknown)}")
        cfg = cls(**d, stm=STMConfig(**stm))
        if cfg.method not in METHODS:
            raise InputError(f"distill method must be one of {METHODS}, not {cfg.method!r}")
        if cfg.memory not in MEMORY_MODES:
            raise InputError(f"distill.memory must be one of {MEMORY_MODES}, not {cfg.memory!r}")
        if cfg.alpha_param not in ALPHA_PARAMS:
            raise InputError(f"distill alpha_param must be one of {ALPHA_PARAMS}, not {cfg.alpha_param!r}")
        return cfg


@dataclass
class EvalConfig(EvalOptions):
    """The evaluation protocol: ``distill.eval`` and the optimiser of the evaluation nets."""

    momentum: float = 0.9
    weight_decay: float = 5e-4
    device: str = DistillSettings.device


# --------------------------------------------------------------------------- presets
# distill.preset picks one of these; every other key under `distill:` in the config overrides it.
# "default": the small run inside the offline synthetic budget, the defaults of the option dataclasses
# (gzmorph.distill_settings, their one source); "laptop": the CPU-scale real-data run; "paper": the
# settings of Guan et al. (2023) for a GPU (their code learns log α: α0 1e-4 and α lr 0.01 are for log α).
DISTILL_PRESETS = {"default": default_preset()}  # DistillSettings()
# The other presets: what they change of "default".
# "laptop": real data on 2 CPU cores (~22 min on the Kaggle sample from nothing, docs/results.md)
DISTILL_PRESETS["laptop"] = deep_merge(DISTILL_PRESETS["default"], {
    "n_experts": 5, "width": 32, "ipc": [1, 10], "runtime": 240,
    # experts chosen by measurement on the Kaggle hiwl5 sample (benchmarks/bench_experts.py, docs/results.md):
    # batch 256 at lr 0.03 has less segment noise than batch 32 (0.16, class-weighted 0.26, vs 0.33) and the
    # students can follow its 23-step segments (MTT IPC 10: 0.60 vs 0.43); the class-weighted loss lifts the
    # experts' balanced accuracy 0.56 -> 0.66
    "expert": {"epochs": 20, "lr": 0.03, "batch_size": 256, "class_weighted": True},
    "mtt": {"syn_steps": 10, "max_start_epoch": 16, "iterations": 300, "lr_img": 1000.0, "alpha0": 0.03},
    "stm": {"syn_steps": 10, "iterations": 300, "lr_img": 1000.0, "alpha0": 0.03, "r_down": 2.5, "r_up": 2.5,
            "patience": 150, "lr_floor": 500.0},
    # IPC 1 learns log α (learned directly, STM's α fell to ~0.001 and its students barely trained) and
    # MTT matches only the first 2 epochs (MTT's own T+ at IPC 1). Kaggle sample, test accuracy / balanced
    # (docs/results.md, session 7): hiwl5 MTT 0.199/0.326 -> 0.439/0.426, STM 0.456/0.330 -> 0.460/0.370;
    # guan9 MTT 0.248/0.226 -> 0.360/0.259, STM 0.111/0.098 -> 0.296/0.216 (STM ignores max_start_epoch)
    "ipc_overrides": {1: {"alpha_param": "log", "lr_alpha": 1e-3, "max_start_epoch": 2}},
    # the full-data nets train to convergence on validation (issue 12's fair baseline): on the Kaggle hiwl5
    # sample at 32 px their best validation accuracy was 0.83 in 30 epochs and 0.89-0.90 at epochs 61-66;
    # patience 5 would have stopped them at epochs 14-43 on noise (docs/results.md, session 16)
    "eval": {"n_nets": 3, "epochs": 300, "full_epochs": 100, "full_patience": 15},
})
DISTILL_PRESETS["paper"] = deep_merge(DISTILL_PRESETS["default"], {
    "n_experts": 100, "image_size": 64, "width": 128, "ipc": [1, 10], "threads": 8, "gpu_mem_mb": 32000,
    "runtime": 1440, "keep_freed_memory": True,
    # Guan et al.'s experts always weight their loss by 1/class count (buffer.py); equal on balanced cuts
    "expert": {"epochs": 50, "lr": 0.001, "batch_size": 256, "class_weighted": True},
    "mtt": {"syn_steps": 50, "max_start_epoch": 20, "iterations": 5000, "lr_img": 1e4, "lr_alpha": 0.01,
            "alpha0": 1e-4, "alpha_param": "log"},
    "stm": {"syn_steps": 50, "iterations": 100000, "lr_img": 1e4, "lr_alpha": 0.01, "alpha0": 1e-4,
            "alpha_param": "log", "patience": 1000, "ft_every": 50, "lr_floor": 50.0},
    "ipc_overrides": {10: {"syn_steps": 20}},
    "eval": {"n_nets": 5, "epochs": 1000, "full_epochs": 50, "full_batch_size": 256},
})


def distill_settings(user: dict) -> dict:
    """The preset named by ``user["preset"]`` (default "default") updated by the other keys."""
    user = dict(user or {})
    preset = user.pop("preset", "default")
    if preset not in DISTILL_PRESETS:
        raise InputError(f"config distill.preset: {preset!r} is not one of {sorted(DISTILL_PRESETS)}")
    out = deep_merge(DISTILL_PRESETS[preset], user)
    out["ipc"] = [int(i) for i in (out["ipc"] if isinstance(out["ipc"], list) else [out["ipc"]])]
    out["amp"] = check_amp(out["amp"])
    bad = [m for m in out["methods"] if m not in ("mtt", "stm")]
    if bad:
        raise InputError(f"config distill.methods: unknown method(s) {bad}; known: mtt, stm")
    return out


def distill_method_options(settings: dict, method: str, ipc) -> dict:
    """A method's options with the per-IPC overrides applied."""
    over = settings["ipc_overrides"]
    return {**settings[method], **over.get(int(ipc), over.get(str(ipc), {}))}
