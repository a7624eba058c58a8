"""Fine-tuning from few labels: ring labels, label budgets, the three arms."""

import numpy as np
import pandas as pd
import pytest

from gzmorph.finetune import FinetuneSettings, finetune_experiment, plan_budgets, ring_labels
from gzmorph.io import InputError


def test_ring_labels_rule():
    df = pd.DataFrame({"Class2.2": [0.8, 0.8, 0.8, 0.2, 0.8, 0.8],
                       "Class6.1": [0.6, 0.6, 0.0, 0.6, 0.1, 0.6],
                       "Class8.1": [0.3, 0.01, 0.0, 0.3, 0.05, 0.1]})
    assert ring_labels(df, FinetuneSettings()).tolist() == [1, 0, 0, -1, -1, -1]
    with pytest.raises(InputError, match="Class8.1"):
        ring_labels(df.drop(columns="Class8.1"))


def test_plan_budgets():
    assert plan_budgets("auto", 40) == ([8, 32], ["budget 128 skipped: only 40 rings available for training"])
    assert plan_budgets("auto", 40, 8, 64, 2)[0] == [8, 16, 32]
    assert plan_budgets([4, 2], 5) == ([2, 4], [])
    with pytest.raises(InputError, match=r"budget\(s\) \[16\] exceed the 10 rings"):
        plan_budgets([8, 16], 10)
    assert plan_budgets("auto", 3, 8, 32) == ([], ["budget 8 skipped: only 3 rings available for training",
                                                    "budget 32 skipped: only 3 rings available for training"])


def test_finetune_arms_run_on_tiny_data():
    from gzmorph.represent import RepresentConfig, Representation, fit_representation

    rng = np.random.default_rng(0)
    n = 40
    labels = np.array([1] * 12 + [0] * 20 + [-1] * 8)
    imgs = rng.integers(0, 60, (n, 16, 16, 3), dtype=np.uint8)
    imgs[labels == 1, 4:12, 4:12] = 220  # rings are bright in the middle
    counts = np.zeros((n, 37), np.int64)
    counts[:, 0] = 40
    cfg = RepresentConfig(epochs=1, batch_size=8, augment=False, progress=False, model_kwargs={"widths": (4, 8, 8, 16)})
    model, norm, _ = fit_representation(imgs, counts, cfg)
    rep = Representation({"model_config": model.config, "state_dict": model.state_dict(), "image_size": 16,
                          "norm": norm}, device="cpu")
    emb = rep.embed(imgs)
    ft = FinetuneSettings(steps=2, head_steps=5, batch_size=8, seeds=1, augment=False)
    runs, summary = finetune_experiment(rep, imgs, emb, labels, [2, 4], ft, device="cpu")
    assert len(runs) == 2 * 3 and set(runs["arm"]) == {"frozen", "finetuned", "scratch"}
    assert runs["accuracy"].between(0, 1).all() and runs["roc_auc"].between(0, 1).all()
    assert (runs["n_test"] == 8).all()  # round(0.3 * 12) rings + as many non-rings
    assert set(summary["frozen"]) == {"2", "4"} and "accuracy_sd" in summary["scratch"]["4"]
