import numpy as np
import pandas as pd
import pytest

from gzmorph.tree import GZ2_TREE, KAGGLE_COLUMNS, resolve_answer


def test_tree_shape():
    assert len(GZ2_TREE.questions) == 11
    assert len(KAGGLE_COLUMNS) == 37
    assert KAGGLE_COLUMNS[0] == "Class1.1" and KAGGLE_COLUMNS[-1] == "Class11.6"
    # every answer leads to an existing question or ends the tree
    numbers = {q.number for q in GZ2_TREE.questions}
    assert all(a.leads_to in numbers or a.leads_to is None for a in GZ2_TREE.answers)


def test_real_kaggle_rows_roundtrip_and_sum(kaggle_dir):
    df = pd.read_csv(kaggle_dir / "training_solutions_rev1.csv")[KAGGLE_COLUMNS]
    cond = GZ2_TREE.to_conditional(df)
    back = GZ2_TREE.to_cumulative(cond)
    np.testing.assert_allclose(back.to_numpy(), df.to_numpy(), atol=1e-12)
    assert GZ2_TREE.sum_violations(df, tol=1e-4).empty
    # conditional fractions of a reached question sum to 1
    assert GZ2_TREE.sum_violations(cond, tol=1e-4, conditional=True).empty


def test_sum_violation_is_found():
    row = GZ2_TREE.ideal_votes(["Class1.1", "Class7.1", "Class6.2"])
    df = pd.DataFrame([row, row])
    df.loc[1, "Class7.1"] = 0.5  # question 7 now sums to 0.5 but 1.0 reached it
    bad = GZ2_TREE.sum_violations(df)
    assert bad["row"].tolist() == [1] and bad["question"].tolist() == [7]


def test_ideal_votes_checks_path():
    v = GZ2_TREE.ideal_votes(["Class1.2", "Class2.1", "Class9.3", "Class6.2"])
    assert v["Class9.3"] == 1.0 and v["Class1.1"] == 0.0
    with pytest.raises(ValueError, match="does not answer"):
        GZ2_TREE.ideal_votes(["Class1.2", "Class6.2"])  # question 2 reached, unanswered
    with pytest.raises(ValueError, match="never reaches"):
        GZ2_TREE.ideal_votes(["Class1.1", "Class7.1", "Class6.2", "Class2.1"])


def test_resolve_answer_names():
    assert resolve_answer("t07_a16").kaggle == "Class7.1"
    assert resolve_answer("t08_odd_feature_a38_dust_lane").kaggle == "Class8.7"
    assert resolve_answer("Class11.5").gz2 == "t11_arms_number_a36_more_than_4"
    with pytest.raises(KeyError, match="not an answer"):
        resolve_answer("Class12.1")
