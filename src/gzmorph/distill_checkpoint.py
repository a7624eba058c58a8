"""The checkpoint of a distillation run (:func:`gzmorph.distill.distill`), from which it resumes after a kill.

A run with a work folder writes ``<work>/checkpoint.pt`` atomically every few minutes: the state
at the start of an iteration (the synthetic images, α and their SGD states, the learning rates and
rollback count, the STM schedule, the random generator that picks experts and start epochs, the
history, stage log and events, the wall time so far).  Every other random draw of an iteration is
seeded by its index, so a resumed run continues exactly as the uninterrupted one would have
(bit-identical on the CPU; on a GPU as reproducible as an uninterrupted run is there).  The
file is a :func:`gzmorph.io.save_bundle` bundle (safetensors: tensors plus a JSON header; nothing
in it is executable).

A checkpoint is resumed only by the run that wrote it: its ``identity`` (:func:`run_identity`: the
method config, model config, data, augmentation, the expert trajectories' content and the gzmorph
code version) must equal the resuming run's.  Any other one, or one that cannot be read or restored
(a truncated file), is set aside (removed) with one log warning, and the run starts from iteration
0.  The caller removes the folder once the outputs are written (:func:`gzmorph.train.discard_checkpoints`).
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import asdict
from pathlib import Path

from .codedeps import package_hash
from .io import load_bundle, one_line, save_bundle, sweep_temporaries

CHECKPOINT_FORMAT = "gzmorph.distill-checkpoint/1"
#: seconds of wall time between a run's checkpoints, unless the environment says (checkpoint_interval)
CHECKPOINT_EVERY = 300.0
#: the environment variable that sets it: when to save is no setting of the result, so no rule param
#: (a param would rerun every distillation when it changes)
INTERVAL_VARIABLE = "GZMORPH_DISTILL_CHECKPOINT_SECONDS"
CHECKPOINT_NAME = "checkpoint.pt"
log = logging.getLogger(__name__)


def experts_digest(trajectories) -> str:
    """SHA-256 of the expert trajectories a run matches (their shapes and float32 values, in order)."""
    h = hashlib.sha256()
    for t in trajectories:
        t = t.detach().cpu().float().contiguous()
        h.update(repr(tuple(t.shape)).encode())
        h.update(t.numpy())
    return h.hexdigest()[:16]


def run_identity(cfg, model_config: dict, data, trajectories, augment, cutout: float) -> dict:
    """What makes two distillation runs the same run: one short hash per part, so that a mismatch
    can be named (config, model_config, data, augment, experts, code_version)."""
    from .train import fingerprint

    return {"config": fingerprint(asdict(cfg)), "model_config": fingerprint(model_config),
            "data": fingerprint(data.fingerprint, data.classes, data.image_size, data.mean, data.std,
                                data.zca is not None),
            "augment": fingerprint(augment, cutout), "experts": experts_digest(trajectories),
            "code_version": package_hash()}


def checkpoint_interval(environ=None) -> float:
    """Seconds between checkpoints: ``$GZMORPH_DISTILL_CHECKPOINT_SECONDS`` (0: every iteration),
    else :data:`CHECKPOINT_EVERY`."""
    import os

    from .io import InputError

    value = (os.environ if environ is None else environ).get(INTERVAL_VARIABLE, "")
    if not value.strip():
        return CHECKPOINT_EVERY
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds < float("inf"):
        raise InputError(f"{INTERVAL_VARIABLE}={value!r}: seconds between checkpoints, a number >= 0")
    return seconds


class Checkpoint:
    """The checkpoint file of one run in its work folder."""

    def __init__(self, work_dir, identity: dict):
        self.path = Path(work_dir) / CHECKPOINT_NAME
        self.identity = identity

    def save(self, state: dict) -> None:
        save_bundle(self.path, {"format": CHECKPOINT_FORMAT, "identity": self.identity, **state}, CHECKPOINT_FORMAT)
        log.info("%s: checkpoint at iteration %d", self.path, state["iteration"])

    def load(self) -> dict | None:
        """The saved state if this run wrote it; else ``None`` (any other file set aside)."""
        sweep_temporaries([self.path])  # the half-written file of a write that was killed
        if not self.path.exists():
            return None
        try:
            saved = load_bundle(self.path, CHECKPOINT_FORMAT, "distillation checkpoint")
        except Exception as err:  # noqa: BLE001 - a truncated, damaged or foreign file is not a checkpoint
            self.set_aside(f"unreadable ({one_line(err)})")
            return None
        old = saved.get("identity")
        diff = [k for k in self.identity if not isinstance(old, dict) or old.get(k) != self.identity[k]]
        if diff:
            self.set_aside(f"of another run ({', '.join(diff)} differ)")
            return None
        return saved

    def set_aside(self, why: str) -> None:
        log.warning("%s: checkpoint %s; distilling from iteration 0", self.path, why)
        self.path.unlink(missing_ok=True)
