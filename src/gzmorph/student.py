"""A net as a flat parameter vector: what expert trajectories store and distillation unrolls.

* :func:`flat_params` / :func:`load_flat`: a model's parameters to / from one float vector
  (the order of ``model.parameters()``);
* :class:`Student` evaluates a net from such a vector (``torch.func.functional_call`` on views
  of it), so distillation can take many differentiable SGD steps of a student.  It can run its
  forward pass under bf16 autocast and in channels-last memory format; the parameters and the
  logits keep θ's dtype.
"""

from __future__ import annotations

import torch
from torch import nn

from .distill_settings import check_amp
from .io import InputError


def flat_params(model: nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()]).float().cpu()


def load_flat(model: nn.Module, theta: torch.Tensor) -> nn.Module:
    torch.nn.utils.vector_to_parameters(theta.to(next(model.parameters()).device), model.parameters())
    return model


def student_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of ``distill.amp`` on ``device``: ``None`` (float32) for "off", bf16 for
    "bf16" (a GPU older than Ampere, which would only emulate it, is one clear error; CPUs without
    bf16 instructions emulate it, slowly)."""
    if check_amp(amp) == "off":
        return None
    if device.type == "cuda" and torch.cuda.get_device_capability(device)[0] < 8:
        raise InputError(f"distill.amp: bf16 is not supported by {torch.cuda.get_device_name(device)}; "
                         "set distill.amp: off")
    return torch.bfloat16


class Student:
    """A net evaluated from a flat parameter vector: ``student(theta, x) -> logits`` (in θ's dtype).

    ``dtype``: the autocast dtype of the forward pass (``None``: float32); ``channels_last``: the
    images and the conv weights go in channels-last memory format."""

    def __init__(self, model: nn.Module, dtype: torch.dtype | None = None, channels_last: bool = False):
        self.model = model
        self.dtype, self.channels_last = dtype, bool(channels_last)
        self.names = [n for n, _ in model.named_parameters()]
        self.shapes = [p.shape for _, p in model.named_parameters()]
        self.numels = [p.numel() for _, p in model.named_parameters()]
        self.n_params = sum(self.numels)

    def params(self, theta: torch.Tensor) -> dict:
        out, i = {}, 0
        for name, shape, n in zip(self.names, self.shapes, self.numels):
            v = theta[i:i + n].view(shape)
            out[name] = v.contiguous(memory_format=torch.channels_last) if self.channels_last and v.dim() == 4 else v
            i += n
        return out

    def __call__(self, theta: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        if self.dtype is None:
            return torch.func.functional_call(self.model, self.params(theta), (x,))
        with torch.autocast(x.device.type, dtype=self.dtype):
            out = torch.func.functional_call(self.model, self.params(theta), (x,))
        return out.to(theta.dtype)
