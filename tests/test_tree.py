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


def test_cumulative_fractions_become_conditional_by_hand():
    """Without the real samples too: a crowd of 30 % round, 10 % cigar and 60 % spiral (each answered
    to the end) has Class7.1 0.3 of all, 0.75 of those asked question 7; question 2's Class2.2 is 0.6
    of all, 1.0 of those asked; question 6 is asked of everyone."""
    paths = {0.3: ["Class1.1", "Class7.1", "Class6.2"], 0.1: ["Class1.1", "Class7.3", "Class6.2"],
             0.6: ["Class1.2", "Class2.2", "Class3.1", "Class4.2", "Class5.1", "Class6.2"]}
    crowd = {c: sum(w * GZ2_TREE.ideal_votes(p)[c] for w, p in paths.items()) for c in KAGGLE_COLUMNS}
    cond = GZ2_TREE.to_conditional(pd.DataFrame([crowd])).iloc[0]
    assert crowd["Class7.1"] == pytest.approx(0.3) and cond["Class7.1"] == pytest.approx(0.75)
    assert cond["Class7.3"] == pytest.approx(0.25) and cond["Class1.2"] == pytest.approx(0.6)
    assert crowd["Class2.2"] == pytest.approx(0.6) and cond["Class2.2"] == pytest.approx(1.0)
    assert cond["Class4.2"] == pytest.approx(1.0) and cond["Class6.2"] == pytest.approx(1.0)
    back = GZ2_TREE.to_cumulative(pd.DataFrame([cond])).iloc[0]
    assert back[KAGGLE_COLUMNS].to_numpy(float) == pytest.approx(pd.Series(crowd)[KAGGLE_COLUMNS].to_numpy(float))


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
