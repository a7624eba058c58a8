"""The distillation section: prototype grids one row per class, the accuracy table plain and balanced."""

import re

import numpy as np
import pytest
from PIL import Image

from gzmorph.report import class_grid, read_fragment, write_fragment
from gzmorph.report.distill import accuracy_rows, distill_section

CLASSES = ["round", "in-between", "cigar", "edge-on", "spiral"]


def evaluation(method, ipc):
    base = {"mean": 0.6, "sd": 0.01, "balanced_accuracy_mean": 0.5, "balanced_accuracy_sd": 0.02}
    return {"method": method, "ipc": ipc, "accuracy_mean": 0.7, "accuracy_sd": 0.05, "accuracy_runs": [0.65, 0.75],
            "balanced_accuracy_mean": 0.65, "balanced_accuracy_sd": 0.04,
            "baselines": {"random": base, "mean": {**base, "mean": 0.55, "balanced_accuracy_mean": 0.45},
                          "full": {**base, "mean": 0.8}},
            "experts_final_test_accuracy": {"mean": 0.75, "runs": [0.74, 0.76], "balanced_accuracy_mean": 0.7,
                                            "balanced_accuracy_runs": [0.69, 0.71]},
            "n_test": 367, "image_size": 32}


def prototypes(ipc, seed=0):
    """``ipc`` images per class, stored class by class as the distillation stores them."""
    u8 = np.random.default_rng(seed).integers(0, 256, (ipc * len(CLASSES), 16, 16, 3), dtype=np.uint8)
    return u8, [c for c in CLASSES for _ in range(ipc)]


def grid_cells(html):
    """(row header, image count) of each class row of the fragment's class grid."""
    cells = re.findall(r'<div class="gz-class-name">([^<]*)</div>|<div class="gz-cell"><img', html)
    rows = []
    for name in cells:
        if name:
            rows.append([name, 0])
        else:
            rows[-1][1] += 1
    return rows


@pytest.mark.parametrize("ipc", [1, 10])
def test_prototype_grid_has_one_row_per_class_and_one_column_per_image(tmp_path, ipc):
    u8, titles = prototypes(ipc)
    sec = distill_section([evaluation("mtt", ipc)], {f"mtt ipc {ipc}": (u8, titles)}, {}, {})
    path = write_fragment(sec, tmp_path / "distill.html", figures=tmp_path / "figures", tables=tmp_path / "tables")
    html = read_fragment(path).html
    assert grid_cells(html) == [[c, ipc] for c in CLASSES]
    assert f"grid-template-columns:max-content repeat({ipc}, 72px)" in html  # fixed columns: never wraps
    with Image.open(tmp_path / "figures" / f"prototypes-mtt-ipc-{ipc}.png") as png:
        assert png.width > 0 and png.height > 0
        if ipc == 10:
            assert png.width > png.height  # ten columns, five rows


def test_class_grid_keeps_classes_apart_when_a_row_is_short():
    u8 = np.zeros((3, 8, 8, 3), np.uint8)
    html = class_grid([("a", u8[:2]), ("b", u8[2:])]).html
    assert grid_cells(html) == [["a", 2], ["b", 1]]
    assert html.count("<div></div>") == 1  # b's missing cell is left empty, so b's row is not joined by a


def test_accuracy_table_is_method_by_ipc_with_plain_and_balanced_beside_every_baseline_and_the_experts():
    rows = accuracy_rows([evaluation("stm", 10), evaluation("mtt", 10), evaluation("mtt", 1)])
    assert [(r["method"], r["IPC"]) for r in rows] == [("mtt", 1), ("mtt", 10), ("stm", 10)]
    row = rows[0]
    for name in ("distilled", "random", "mean", "full", "experts"):
        assert name in row and f"{name} (balanced)" in row
    assert row["distilled"] == "0.700 ± 0.050" and row["distilled (balanced)"] == "0.650 ± 0.040"
    assert row["full"] == "0.800 ± 0.010" and row["experts (balanced)"] == "0.700 ± 0.014"
    assert (row["random"], row["random (balanced)"]) == ("0.600 ± 0.010", "0.500 ± 0.020")
    assert (row["mean"], row["mean (balanced)"]) == ("0.550 ± 0.010", "0.450 ± 0.020")
    assert row["test galaxies"] == 367 and row["px"] == 32 and row["nets"] == 2  # the size it was distilled at, as configs differ


def test_the_section_says_whether_the_full_data_nets_converged():
    ev = evaluation("mtt", 10)
    nets = [{"epochs_run": 12, "best_epoch": 9, "stopped_early": True},
            {"epochs_run": 30, "best_epoch": 30, "stopped_early": False}]
    ev["baselines"]["full"]["training"] = {"epochs_cap": 30, "patience": 3, "nets": nets}
    html = distill_section([ev], {}, {}, {}).render()
    assert "Full-data nets: 1 of 2 stopped on the validation split (3 epochs without a better accuracy); epochs " \
           "run 12, 30 of at most 30 (distill.eval.full_epochs: a net that reaches it may not have converged)." in html
    assert "Full-data nets" not in distill_section([evaluation("mtt", 10)], {}, {}, {}).render()  # older eval.json
