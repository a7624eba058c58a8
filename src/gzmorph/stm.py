"""The self-adaptive schedule of STM (Guan et al. 2023): which start epochs to match, and when to stop.

Stage mode: the start epochs cycle below a cap that begins at 1 (M = 1).  Every iteration also
measures, without an update, the matching loss at the next, unused epoch (``cap``); every
``check_every`` such measurements the Pearson r of that loss against the iteration index is
compared with σ = sqrt(1/(n−2)): r < −``r_down``σ or r > ``r_up``σ (a significant trend: the
distilled images now affect that epoch) grows the cap by one and starts a new record.  After
``patience`` iterations of a stage without a significant trend the run switches to fine-tuning
mode: the start epochs cycle below the final cap, the image lr is multiplied by ``ft_factor``
every ``ft_every`` iterations, and the run stops once it falls below ``lr_floor``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .distill_settings import STMConfig


def pearson(x, y) -> float:
    x, y = np.asarray(x, float), np.asarray(y, float)
    if len(x) < 3 or x.std() == 0 or y.std() == 0:
        return 0.0
    return float(np.corrcoef(x, y)[0, 1])


@dataclass
class STMStep:
    """What one :meth:`STMSchedule.update` asks of the run."""

    lr_scale: float = 1.0  # multiply the image lr by this
    events: list = field(default_factory=list)  # "cap" and "finetune" events of this iteration


class STMSchedule:
    """The start-epoch cap of STM and its mode; :meth:`update` after every good iteration."""

    def __init__(self, cfg: STMConfig, n_epochs: int):
        self.cfg, self.n_epochs = cfg, int(n_epochs)
        self.cap, self.mode = 1, "stage"  # mode: "stage" | "finetune"
        self.record: list[tuple[int, float]] = []  # (iteration, next-epoch loss) of this stage
        self.stage_iters = 0  # good iterations since the cap last grew
        self.ft_iters = 0  # good iterations of fine-tuning
        self.r = self.sigma = math.nan  # the trend test of the last update (NaN: none)

    def start_epoch(self, iteration: int) -> int:
        return (self.stage_iters if self.mode == "stage" else iteration) % self.cap

    @property
    def probing(self) -> bool:
        """Whether this iteration measures the loss at the next, unused epoch (``cap``)."""
        return self.mode == "stage" and self.cap < self.n_epochs

    def finished(self, lr_img: float) -> bool:
        return self.mode == "finetune" and lr_img < self.cfg.lr_floor

    def update(self, iteration: int, next_loss: float = math.nan) -> STMStep:
        """One good iteration: record the next-epoch loss (when probed), test the trend, switch
        to fine-tuning after ``patience`` iterations without one, decay the image lr there."""
        step = STMStep()
        if math.isfinite(next_loss):
            self.record.append((iteration, next_loss))
        self.stage_iters += 1
        self.r = self.sigma = math.nan
        grew = self.mode == "stage" and self._trend_grows_cap()
        if grew:
            step.events.append({"iteration": iteration, "event": "cap", "cap": self.cap, "r": self.r,
                                "sigma": self.sigma})
        if self.mode == "stage" and not grew and self.stage_iters >= self.cfg.patience:
            self.mode = "finetune"
            step.events.append({"iteration": iteration, "event": "finetune", "cap": self.cap})
        elif self.mode == "finetune":
            self.ft_iters += 1
            if self.ft_iters % self.cfg.ft_every == 0:
                step.lr_scale = self.cfg.ft_factor
        return step

    def _trend_grows_cap(self) -> bool:
        """Every ``check_every`` records: a significant trend of the record grows the cap."""
        n = len(self.record)
        if n < 3 or n % self.cfg.check_every:
            return False
        self.r = pearson([i for i, _ in self.record], [v for _, v in self.record])
        self.sigma = math.sqrt(1.0 / (n - 2))
        if not (self.r < -self.cfg.r_down * self.sigma or self.r > self.cfg.r_up * self.sigma):
            return False
        self.cap, self.record, self.stage_iters = min(self.cap + 1, self.n_epochs), [], 0
        return True
