"""A net as a flat parameter vector: what expert trajectories store and distillation unrolls.

* :func:`flat_params` / :func:`load_flat`: a model's parameters to / from one float vector
  (the order of ``model.parameters()``);
* :class:`Student` evaluates a net from such a vector (``torch.func.functional_call`` on views
  of it), so distillation can take many differentiable SGD steps of a student.
"""

from __future__ import annotations

import torch
from torch import nn


def flat_params(model: nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()]).float().cpu()


def load_flat(model: nn.Module, theta: torch.Tensor) -> nn.Module:
    torch.nn.utils.vector_to_parameters(theta.to(next(model.parameters()).device), model.parameters())
    return model


class Student:
    """A net evaluated from a flat parameter vector: ``student(theta, x) -> logits``."""

    def __init__(self, model: nn.Module):
        self.model = model
        self.names = [n for n, _ in model.named_parameters()]
        self.shapes = [p.shape for _, p in model.named_parameters()]
        self.numels = [p.numel() for _, p in model.named_parameters()]
        self.n_params = sum(self.numels)

    def params(self, theta: torch.Tensor) -> dict:
        out, i = {}, 0
        for name, shape, n in zip(self.names, self.shapes, self.numels):
            out[name] = theta[i:i + n].view(shape)
            i += n
        return out

    def __call__(self, theta: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return torch.func.functional_call(self.model, self.params(theta), (x,))
