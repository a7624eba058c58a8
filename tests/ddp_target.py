"""A tiny training job for tests/test_distributed.py, importable by the ranks that
gzmorph.distributed.launch starts (they find it through PYTHONPATH).

A conv net with two BatchNorm layers, trained by gzmorph.train.fit with augmentation, momentum
SGD, validation metrics and checkpoints.  The training split (30 images, global batch 7) makes
batches of 7, 7, 7, 7 and 2, so two ranks get uneven shares (4 + 3) and, in the last batch, one
example each; the validation split (9 images) is split 5 + 4.
"""

from __future__ import annotations

import os
import signal

N_TRAIN, N_VAL, SIZE = 30, 9, 12


def data():
    import torch

    g = torch.Generator().manual_seed(1234)
    x = torch.randint(0, 256, (N_TRAIN + N_VAL, SIZE, SIZE, 3), dtype=torch.uint8, generator=g)
    y = (x[..., 0].float().mean((1, 2)) > x[..., 2].float().mean((1, 2))).long()
    return x, y


def model():
    from torch import nn

    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
                         nn.Conv2d(8, 8, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 2))


def train_tiny(out: str, checkpoint_dir: str | None = None, epochs: int = 3, batch_size: int = 7,
               fail_rank: int | None = None, fail_epoch: int | None = None, how: str = "raise") -> dict:
    """Train; rank 0 saves the weights to ``out``.  ``fail_rank`` raises (``how="raise"``) or is
    killed by SIGKILL (``how="kill"``) at the end of epoch ``fail_epoch``."""
    import torch

    from gzmorph import augment as A
    from gzmorph.distributed import is_main, rank
    from gzmorph.train import fit

    x, y = data()
    torch.manual_seed(0)
    net = model()

    def on_epoch_end(epoch, row, _model):
        if rank() == fail_rank and epoch == fail_epoch:
            if how == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
            raise ValueError(f"rank {rank()} gave up at epoch {epoch}")

    def metrics(out_, y_):
        return {"accuracy": (out_.argmax(1) == y_).float().mean().item()}

    result = fit(net, torch.nn.CrossEntropyLoss(), (x[:N_TRAIN], y[:N_TRAIN]), (x[N_TRAIN:], y[N_TRAIN:]),
                 epochs=epochs, batch_size=batch_size, seed=3,
                 optimizer=lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9),
                 transform=A.BatchTransform([0.5] * 3, [0.25] * 3, A.AugmentConfig()), metrics_fn=metrics,
                 checkpoint_dir=checkpoint_dir, device="cpu", restore_best=False, on_epoch_end=on_epoch_end,
                 meta={"model": "tiny", "fingerprint": "ddp-test"})
    if is_main():
        torch.save(net.state_dict(), out)
    return {"history": result.history, "classes": [type(m).__name__ for m in net.modules()]}
