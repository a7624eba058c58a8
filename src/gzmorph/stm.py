"""The self-adaptive schedule of STM (Guan et al. 2023): which start epochs to match, and when to stop.

As the authors' ``distill.py`` (HaowenGuan/Galaxy-Dataset-Distillation, ``stage-MTT``) runs it:

* the start epoch of iteration ``it`` is ``it % cap``; the cap begins at 1 (M = 1);
* while the stage lasts, every iteration first measures, with the same expert and before the image
  update, the matching loss at the next, unused epoch (``cap``; :mod:`gzmorph.distill` does this
  and passes the loss to :meth:`STMSchedule.update`);
* every ``check_every`` iterations of a stage (a check) the Pearson r of the stage's record of
  those losses against their index is compared with σ = sqrt(1/(n−2)): r < −``r_down``σ (a
  significant decrease) grows the cap by one at any check; r > ``r_up``σ (the images overfit the
  earlier epochs) only at the 1st, 3rd, 5th, … check of a stage (the reference tests it where the
  record's length is an odd multiple of 10); a growth starts a new record;
* a check at which the stage has run more than ``patience`` iterations switches to fine-tuning
  instead: the record stops, the start epochs keep cycling below the final cap, the image lr is
  multiplied by ``ft_factor`` at every iteration index divisible by ``ft_every``, and the run stops
  once it is below ``lr_floor``.

The cap grows up to the experts' last epoch; with no next epoch left there is nothing to measure,
and the stage ends in fine-tuning after ``patience`` iterations.  With one learned α per start
epoch (``alpha_per_epoch``), a growth also gives the new epoch a copy of the last α and scales
every α's learning rate by the cap (:mod:`gzmorph.distill`).
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
    grew: bool = False  # the cap grew (a new start epoch, and with per-epoch α a new α)
    events: list = field(default_factory=list)  # "cap" and "finetune" events of this iteration


class STMSchedule:
    """The start-epoch cap of STM and its mode; :meth:`update` after every good iteration."""

    def __init__(self, cfg: STMConfig, n_epochs: int):
        self.cfg, self.n_epochs = cfg, int(n_epochs)
        self.cap, self.mode = 1, "stage"  # mode: "stage" | "finetune"
        self.record: list[float] = []  # the next-epoch losses of this stage
        self.stage_len = 0  # good iterations of this stage
        self.r = self.sigma = math.nan  # the trend test of the last update (NaN: none)

    def state_dict(self) -> dict:
        """What :meth:`update` has changed (plain values): with :meth:`load_state_dict`, a resumed run
        continues the schedule exactly (:mod:`gzmorph.distill_checkpoint`)."""
        return {"cap": self.cap, "mode": self.mode, "record": list(self.record), "stage_len": self.stage_len,
                "r": self.r, "sigma": self.sigma}

    def load_state_dict(self, state: dict) -> None:
        cap, mode = int(state["cap"]), str(state["mode"])
        if not 1 <= cap <= max(1, self.n_epochs) or mode not in ("stage", "finetune"):
            raise ValueError(f"STM schedule state with cap {cap} of {self.n_epochs} epochs, mode {mode!r}")
        self.cap, self.mode = cap, mode
        self.record = [float(v) for v in state["record"]]
        self.stage_len = int(state["stage_len"])
        self.r, self.sigma = float(state["r"]), float(state["sigma"])

    def start_epoch(self, iteration: int) -> int:
        return int(iteration) % self.cap

    @property
    def probing(self) -> bool:
        """Whether this iteration measures the loss at the next, unused epoch (``cap``)."""
        return self.mode == "stage" and self.cap < self.n_epochs

    def finished(self, lr_img: float) -> bool:
        return self.mode == "finetune" and lr_img < self.cfg.lr_floor

    def update(self, iteration: int, next_loss: float = math.nan) -> STMStep:
        """One good iteration: record the next-epoch loss (when measured), check the stage every
        ``check_every`` iterations, decay the image lr while fine-tuning."""
        step = STMStep()
        self.r = self.sigma = math.nan
        if self.mode == "stage":
            if math.isfinite(next_loss):
                self.record.append(float(next_loss))
            self.stage_len += 1
            if self.stage_len % self.cfg.check_every == 0:
                self._check(iteration, step)
        if self.mode == "finetune" and iteration % self.cfg.ft_every == 0:
            step.lr_scale = self.cfg.ft_factor
        return step

    def _check(self, iteration: int, step: STMStep) -> None:
        n = len(self.record)
        if n >= 3:
            self.r = pearson(range(n), self.record)
            self.sigma = math.sqrt(1.0 / (n - 2))
        if self.stage_len > self.cfg.patience:
            self.mode = "finetune"
            step.events.append({"iteration": iteration, "event": "finetune", "cap": self.cap})
            return
        if n < 3:
            return
        odd_check = (self.stage_len // self.cfg.check_every) % 2 == 1
        if self.r < -self.cfg.r_down * self.sigma or (odd_check and self.r > self.cfg.r_up * self.sigma):
            self.cap = min(self.cap + 1, self.n_epochs)
            self.record, self.stage_len, step.grew = [], 0, True
            step.events.append({"iteration": iteration, "event": "cap", "cap": self.cap, "r": self.r,
                                "sigma": self.sigma})
