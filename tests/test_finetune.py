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


def _tiny_task():
    """A tiny representation, 40 galaxies (12 rings, 20 not, 8 unlabelled) and the runs of every arm."""
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
    return rep, imgs, emb, labels, ft, runs, summary


def test_finetune_arms_run_on_tiny_data():
    *_, runs, summary = _tiny_task()
    assert len(runs) == 2 * 3 and set(runs["arm"]) == {"frozen", "finetuned", "scratch"}
    assert runs["accuracy"].between(0, 1).all() and runs["roc_auc"].between(0, 1).all()
    assert (runs["n_test"] == 8).all()  # round(0.3 * 12) rings + as many non-rings
    assert set(summary["frozen"]) == {"2", "4"} and "accuracy_sd" in summary["scratch"]["4"]


def test_each_budget_trains_on_b_galaxies_per_class_apart_from_the_test_set(monkeypatch):
    """A budget b trains on exactly b galaxies of every class, nested in the next budget's, and
    never on a test galaxy; the test set is balanced: round(0.3 x 12) rings and as many others."""
    import gzmorph.finetune as F

    seen = []

    def record(arm, rep, images, embeddings, tr, test, y, n_classes, settings, seed, device):
        seen.append((arm, tr.copy(), test.copy()))
        return np.zeros((len(test), n_classes), np.float32)

    monkeypatch.setattr(F, "_arm_logits", record)
    labels = np.repeat([0, 1, -1], [20, 12, 8])
    ft = FinetuneSettings(seeds=2, arms=["frozen"])
    runs, _ = finetune_experiment(None, None, None, labels, [2, 4], ft, device="cpu")
    assert runs["n_train"].tolist() == [4, 8, 4, 8] and (runs["n_test"] == 8).all()
    for (_, small, test), (_, big, test_again) in zip(seen[::2], seen[1::2]):
        assert np.array_equal(test, test_again) and np.bincount(labels[test]).tolist() == [4, 4]
        assert np.bincount(labels[small]).tolist() == [2, 2] and np.bincount(labels[big]).tolist() == [4, 4]
        assert set(small) <= set(big) and not set(big) & set(test) and (labels[big] >= 0).all()
    assert not np.array_equal(seen[0][2], seen[2][2])  # each seed draws its own test set


def test_finetuning_reads_from_the_store_only_the_images_it_trains_on(tmp_path):
    """The finetune rule leaves the labelled galaxies' images in the store (it read every one into
    memory): an arm reads its budget's images and streams the test set, with the same results."""
    from gzmorph.finetune import LabelledImages
    from gzmorph.imageset import ImageStore, write_images

    rep, imgs, emb, labels, ft, runs, _ = _tiny_task()
    write_images(tmp_path / "images.parquet", np.arange(len(imgs)), imgs)
    store = ImageStore(tmp_path / "images.parquet")
    read, original = [], store.read_rows
    store.read_rows = lambda rows: read.append(len(rows)) or original(rows)
    lazy = LabelledImages(store, np.arange(len(imgs)))
    again, _ = finetune_experiment(rep, lazy, emb, labels, [2, 4], ft, device="cpu")
    assert 0 < max(read) <= 2 * 4  # a budget of 4 per class, 2 classes; never all 40
    numbers = ["accuracy", "balanced_accuracy", "roc_auc", "n_test"]
    pd.testing.assert_frame_equal(again[numbers], runs[numbers])


def test_task_labels_from_rings_classes_or_any_column():
    from gzmorph.finetune import task_labels

    src = pd.DataFrame({"id": [1, 2, 3, 4], "Class2.2": [0.8] * 4, "Class6.1": [0.6, 0.6, 0.0, 0.6],
                        "Class8.1": [0.3, 0.01, 0.0, 0.1], "morph": ["bar", "", "ring", "bar"],
                        "Class1.1": [0.9, 0.2, np.nan, 0.5]})
    labels, names, _ = task_labels(FinetuneSettings(), src)
    assert names == ["not ring", "ring"] and labels.tolist() == [1, 0, 0, -1]
    labels, names, task = task_labels(FinetuneSettings(label="morph"), src)
    assert names == ["bar", "ring"] and labels.tolist() == [0, -1, 1, 0] and "morph" in task
    labels, names, _ = task_labels(FinetuneSettings(label="Class1.1", threshold=0.5), src)
    assert labels.tolist() == [1, 0, -1, 1] and names == ["Class1.1 < 0.5", "Class1.1 >= 0.5"]
    curated = pd.DataFrame({"id": [2, 4], "label": [1, 0]})
    labels, names, _ = task_labels(FinetuneSettings(label="class"), src, curated, ["round", "spiral"])
    assert labels.tolist() == [-1, 1, -1, 0] and names == ["round", "spiral"]
    with pytest.raises(InputError, match="holds fractions: set represent.finetune.threshold"):
        task_labels(FinetuneSettings(label="Class1.1"), src)
    with pytest.raises(InputError, match="no column 'nope'"):
        task_labels(FinetuneSettings(label="nope"), src)


def test_a_multiclass_task_runs_every_arm_and_its_report_section(tmp_path):
    """Any label: three classes through finetune_experiment, then the report section of its metrics."""
    from gzmorph.report.represent import represent_section
    from gzmorph.represent import RepresentConfig, Representation, fit_representation

    rng = np.random.default_rng(1)
    labels = np.repeat([0, 1, 2], 12)
    imgs = rng.integers(0, 40, (36, 16, 16, 3), dtype=np.uint8)
    for k in range(3):
        imgs[labels == k, 4 * k:4 * k + 6] = 230  # a bright band whose place is the class
    counts = np.zeros((36, 37), np.int64)
    counts[:, 0] = 40
    cfg = RepresentConfig(epochs=1, batch_size=8, augment=False, progress=False, model_kwargs={"widths": (4, 8)})
    model, norm, _ = fit_representation(imgs, counts, cfg)
    rep = Representation({"model_config": model.config, "state_dict": model.state_dict(), "image_size": 16,
                          "norm": norm}, device="cpu")
    ft = FinetuneSettings(steps=3, head_steps=20, batch_size=8, augment=False)
    runs, summary = finetune_experiment(rep, imgs, rep.embed(imgs), labels, [3, 6], ft, device="cpu")
    assert len(runs) == 6 and (runs["n_test"] == 3 * 4).all()  # round(0.3 * 12) per class, 3 classes
    assert runs[["accuracy", "balanced_accuracy", "roc_auc"]].apply(lambda c: c.between(0, 1)).all().all()
    met = {"task": "the classes of column 'morph'", "label": "morph", "classes": ["a", "b", "c"],
           "class_counts": [12, 12, 12], "n_test_per_class": 4, "available_for_training": 8, "budgets": [3, 6],
           "notes": [], "seeds": [0], "steps": 3, "head_steps": 20, "arms": summary}
    (tmp_path / "m.json").write_text(__import__("json").dumps(met))
    runs.to_csv(tmp_path / "runs.tsv", sep="\t", index=False)
    from gzmorph.report.sections import fragment_text

    html = fragment_text(represent_section("finetune", {"metrics": tmp_path / "m.json", "runs": tmp_path / "runs.tsv"}))
    assert "galaxies per class" in html and "balanced accuracy" in html and "a: 12, b: 12, c: 12" in html
    # a ROC AUC some seeds lack says over how many it is; none at all says why
    summary["frozen"]["3"].update(roc_auc_n=0, roc_auc_mean=float("nan"), n_seeds=2)
    summary["frozen"]["6"].update(roc_auc_n=1, n_seeds=2)
    (tmp_path / "m.json").write_text(__import__("json").dumps({**met, "arms": summary}))
    html = fragment_text(represent_section("finetune", {"metrics": tmp_path / "m.json", "runs": tmp_path / "runs.tsv"}))
    assert "– (undefined: a test set lacked a class)" in html and " (1 of 2 seeds)" in html


def test_label_metrics_values_known_by_hand():
    """Accuracy, balanced accuracy and ROC AUC against cases worked out by hand: a perfect and a
    reversed scorer (AUC 1 and 0), and an imbalanced case where balanced differs from plain."""
    from gzmorph.finetune import label_metrics

    y = np.array([0, 0, 0, 1])
    good = np.array([[2.0, 0], [1, 0], [3, 0], [0, 5]])
    m = label_metrics(good, y, 2)
    assert m == {"accuracy": 1.0, "balanced_accuracy": 1.0, "roc_auc": 1.0}
    m = label_metrics(good[:, ::-1].copy(), y, 2)  # every prediction flipped
    assert m["accuracy"] == 0.0 and m["roc_auc"] == 0.0
    always0 = np.array([[1.0, 0]] * 4)  # predicts class 0: 3/4 right, recalls 1 and 0
    m = label_metrics(always0, y, 2)
    assert m["accuracy"] == 0.75 and m["balanced_accuracy"] == 0.5 and m["roc_auc"] == 0.5
    y3 = np.array([0, 1, 2, 2])
    m = label_metrics(np.eye(3)[[0, 1, 2, 0]] * 4, y3, 3)
    assert m["accuracy"] == 0.75 and m["balanced_accuracy"] == pytest.approx((1 + 1 + 0.5) / 3)
    assert np.isnan(label_metrics(always0, np.array([0, 0, 0, 0]), 2)["roc_auc"])  # one class only


def test_summary_means_and_sds_over_seeds():
    from gzmorph.finetune import _summarise

    runs = pd.DataFrame({"seed": [0, 1, 2, 0], "budget": [5, 5, 5, 10], "arm": ["frozen"] * 4,
                         "accuracy": [0.5, 0.7, 0.9, 0.8], "balanced_accuracy": [0.4, 0.4, 0.4, 0.6],
                         "roc_auc": [0.6, 0.8, 1.0, 0.9]})
    s = _summarise(runs)["frozen"]
    assert s["5"]["accuracy_mean"] == pytest.approx(0.7) and s["5"]["accuracy_sd"] == pytest.approx(0.2)
    assert s["5"]["balanced_accuracy_sd"] == pytest.approx(0.0, abs=1e-12)
    assert s["5"]["roc_auc_mean"] == pytest.approx(0.8)
    assert s["5"]["n_seeds"] == 3 and s["10"] == {
        "accuracy_mean": 0.8, "accuracy_sd": 0.0, "accuracy_n": 1, "balanced_accuracy_mean": 0.6,
        "balanced_accuracy_sd": 0.0, "balanced_accuracy_n": 1, "roc_auc_mean": 0.9, "roc_auc_sd": 0.0, "roc_auc_n": 1,
        "n_seeds": 1}
    # ROC AUC undefined for some seeds (a test set without one class): counted, and shown as such
    runs.loc[1, "roc_auc"] = np.nan
    s = _summarise(runs)["frozen"]["5"]
    assert s["roc_auc_mean"] == pytest.approx(0.8) and s["roc_auc_n"] == 2 and s["n_seeds"] == 3
