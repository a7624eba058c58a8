"""The Zoobot-style representation: loss, vote counts, bad catalogues, training and embeddings."""

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.special import gammaln

from gzmorph.imageset import read_images
from gzmorph.io import InputError
from gzmorph.represent import (
    DirichletMultinomialLoss, RepresentConfig, check_vote_table, concentrations, dirichlet_multinomial_nll,
    embed_table, embedding_map, fit_representation, load_representation, membership_matrix, question_columns,
    read_embeddings, train_representation, vote_counts, write_embeddings,
)
from gzmorph.tree import GZ2_TREE, KAGGLE_COLUMNS

M = torch.from_numpy(membership_matrix())


def direct_nll(alpha: np.ndarray, k: np.ndarray) -> float:
    """-log Dirichlet-multinomial pmf of one question, written out with gammaln."""
    n, a = k.sum(), alpha.sum()
    if n == 0:
        return 0.0
    ll = (gammaln(n + 1) - gammaln(k + 1).sum() + gammaln(a) - gammaln(n + a)
          + (gammaln(k + alpha) - gammaln(alpha)).sum())
    return -float(ll)


def test_membership_covers_every_answer_once():
    assert M.shape == (37, 11)
    assert torch.all(M.sum(1) == 1)
    assert [len(a) for _, a in question_columns()] == M.sum(0).int().tolist()


def test_loss_matches_direct_computation_and_scipy():
    rng = np.random.default_rng(0)
    logits = torch.from_numpy(rng.normal(0, 2, (6, 37))).float()
    counts = torch.from_numpy(rng.integers(0, 15, (6, 37))).float()
    counts[2, :] = 0  # a galaxy with no votes at all
    got = dirichlet_multinomial_nll(logits, counts, M, per_question=True).double().numpy()
    alpha = (1 + 100 / (1 + np.exp(-logits.double().numpy())))
    cols = KAGGLE_COLUMNS
    for i in range(6):
        for j, (_, answers) in enumerate(question_columns()):
            idx = [cols.index(a) for a in answers]
            assert got[i, j] == pytest.approx(direct_nll(alpha[i, idx], counts[i, idx].numpy()), rel=1e-4, abs=1e-3)
    from scipy.stats import dirichlet_multinomial

    idx = [cols.index(a) for a in question_columns()[0][1]]
    k = counts[0, idx].numpy()
    ref = -dirichlet_multinomial.logpmf(k, alpha[0, idx], k.sum())
    assert got[0, 0] == pytest.approx(ref, rel=1e-4)
    loss = DirichletMultinomialLoss()(logits, counts)
    assert float(loss) == pytest.approx(got.sum(1).mean(), rel=1e-5)


def test_unreached_questions_contribute_zero():
    logits = torch.randn(3, 37)
    counts = torch.zeros(3, 37)
    counts[:, KAGGLE_COLUMNS.index("Class1.1")] = 30  # everyone said smooth: Q2-5, 9-11 unreached
    per_q = dirichlet_multinomial_nll(logits, counts, M, per_question=True)
    reached = {0}
    for j in range(11):
        if j not in reached:
            assert torch.all(per_q[:, j] == 0)
    assert torch.all(per_q[:, 0] > 0)
    assert torch.all(dirichlet_multinomial_nll(logits, torch.zeros(3, 37), M) == 0)


def test_finite_gradients_for_extreme_logits_and_zero_counts():
    logits = torch.tensor([[1e4] * 37, [-1e4] * 37, [0.0] * 37], requires_grad=True)
    counts = torch.zeros(3, 37)
    counts[0, :3] = torch.tensor([40.0, 0, 0])
    counts[1, :3] = torch.tensor([0.0, 40, 0])
    loss = DirichletMultinomialLoss()(logits, counts)
    loss.backward()
    assert torch.isfinite(loss)
    assert torch.all(torch.isfinite(logits.grad))
    a = concentrations(torch.tensor([-1e4, 0.0, 1e4]))
    assert torch.allclose(a, torch.tensor([1.0, 51.0, 101.0]))


def kaggle_row(cond: dict) -> pd.DataFrame:
    """One galaxy in the Kaggle cumulative layout from conditional fractions."""
    c = pd.DataFrame([{col: cond.get(col, 0.0) for col in KAGGLE_COLUMNS}])
    return GZ2_TREE.to_cumulative(c)


def test_counts_from_kaggle_fractions():
    cond = {"Class1.1": 0.25, "Class1.2": 0.75, "Class2.1": 0.0, "Class2.2": 1.0, "Class3.1": 0.5, "Class3.2": 0.5,
            "Class4.1": 1.0, "Class10.1": 1.0, "Class11.2": 1.0, "Class5.2": 1.0, "Class6.1": 0.5, "Class6.2": 0.5,
            "Class8.1": 1.0, "Class7.1": 1.0}
    df = kaggle_row(cond)
    check_vote_table(df)
    counts, src = vote_counts(df, n_volunteers=40)
    assert src == "fractions"
    got = dict(zip(KAGGLE_COLUMNS, counts[0]))
    assert got["Class1.1"] == 10 and got["Class1.2"] == 30  # Q1 reached by all 40
    assert got["Class2.2"] == 30 and got["Class3.1"] == 15  # reach of Q2/Q3 = 0.75
    assert got["Class7.1"] == 10  # Q7 reached by the smooth quarter
    assert got["Class6.1"] == 20 and got["Class6.2"] == 20  # Q6 has reach 1 by convention
    assert got["Class8.1"] == 20  # Q8 reached by the "odd" half
    assert got["Class9.1"] == got["Class9.2"] == got["Class9.3"] == 0  # edge-on question unreached
    # with per-answer counts in the catalogue they are used as they are
    df2 = df.copy()
    for j, a in enumerate(GZ2_TREE.answers):
        df2[f"{a.gz2}_count"] = j
    counts2, src2 = vote_counts(df2)
    assert src2 == "counts" and counts2[0].tolist() == list(range(37))


def test_the_zoobot_releases_counts_are_used_where_it_has_them():
    """The Zoobot GZ2 release keeps real per-answer counts under its own names, and none for question
    8: those questions take the real counts, the rest fraction x reach x n_volunteers."""
    from gzmorph.sources.gz2_remote import ZOOBOT_COUNT_COLUMNS

    cond = {"Class1.1": 0.25, "Class1.2": 0.75, "Class2.2": 1.0, "Class3.2": 1.0, "Class4.2": 1.0, "Class5.1": 1.0,
            "Class6.1": 0.5, "Class6.2": 0.5, "Class8.1": 1.0}
    df = kaggle_row(cond)
    q1 = GZ2_TREE.question(1).answers
    for a, n in zip(q1, (25, 15, 9)):
        df[ZOOBOT_COUNT_COLUMNS[a.gz2]] = n
    counts, src = vote_counts(df, n_volunteers=40)
    got = dict(zip(KAGGLE_COLUMNS, counts[0]))
    assert src == "counts and fractions"
    assert [got[a.kaggle] for a in q1] == [25, 15, 9]  # real counts (fractions would give 10, 30, 0)
    assert got["Class8.1"] == 20  # no counts for question 8: its fraction of the 40
    # merged with a source without counts (its rows empty there): those rows keep their fractions
    both = pd.concat([df, kaggle_row(cond)], ignore_index=True)
    counts, src = vote_counts(both, n_volunteers=40)
    assert src == "counts and fractions"
    assert [counts[1, KAGGLE_COLUMNS.index(a.kaggle)] for a in q1] == [10, 30, 0]
    assert counts[0, KAGGLE_COLUMNS.index("Class1.1")] == 25


def test_nan_question_left_out():
    df = kaggle_row({"Class1.1": 1.0, "Class7.1": 1.0, "Class6.1": 1.0, "Class8.3": 1.0})
    df[[f"Class8.{i}" for i in range(1, 8)]] = np.nan
    counts, _ = vote_counts(df)
    q8 = [KAGGLE_COLUMNS.index(f"Class8.{i}") for i in range(1, 8)]
    assert counts[0, q8].sum() == 0 and counts[0, KAGGLE_COLUMNS.index("Class6.1")] == 40


def test_bad_catalogues_name_the_problem():
    df = kaggle_row({"Class1.1": 1.0, "Class7.1": 1.0, "Class6.2": 1.0})
    df.insert(0, "id", [123])
    with pytest.raises(InputError, match=r"missing: .*Class7\.1.*question\(s\) 7"):
        check_vote_table(df.drop(columns=["Class7.1", "Class7.2", "Class7.3"]), where="cat.parquet")
    bad = pd.concat([df] * 3, ignore_index=True)
    bad["id"] = [1, 2, 3]
    bad.loc[1, "Class7.1"] = 0.5  # Q7 no longer sums to its reach (1.0)
    with pytest.raises(InputError, match=r"1 of 3 galaxies.*Q7: 1.*id 2 question 7: sum 0\.500, expected 1\.000"):
        check_vote_table(bad, where="cat.parquet")
    neg = df.copy()
    neg.loc[0, "Class1.3"] = -0.2
    with pytest.raises(InputError, match="outside"):
        check_vote_table(neg)


def tiny_images(n, size=16, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 255, (n, size, size, 3), dtype=np.uint8)


def test_fit_embed_and_tables(tmp_path):
    from gzmorph.imageset import write_images

    n = 24
    ids = np.arange(1000, 1000 + n)
    rows = [kaggle_row({"Class1.1": 0.8, "Class1.2": 0.2, "Class2.2": 1.0, "Class3.2": 1.0, "Class4.2": 1.0,
                        "Class5.2": 1.0, "Class7.1": 1.0, "Class6.2": 1.0})] * n
    cat = pd.concat(rows, ignore_index=True)
    cat.insert(0, "id", ids)
    cat.insert(1, "image_path", "x.jpg")
    cat.to_parquet(tmp_path / "source.parquet")
    write_images(tmp_path / "images.parquet", ids[::-1], tiny_images(n))  # a different order than the catalogue
    summary = train_representation(tmp_path / "images.parquet", tmp_path / "source.parquet", tmp_path / "model.pt",
                                   epochs=1, batch_size=8, model_kwargs={"widths": (4, 8, 8, 16)}, progress=False,
                                   metrics_path=tmp_path / "training.tsv")
    assert summary["n_galaxies"] == n and summary["count_source"] == "fractions"
    assert (tmp_path / "training.tsv").exists()
    rep = load_representation(tmp_path / "model.pt")
    out_ids, dim = embed_table(rep, tmp_path / "images.parquet", tmp_path / "emb.parquet", batch_size=5,
                               progress=False)
    ids2, vec = read_embeddings(tmp_path / "emb.parquet")
    assert dim == 16 and vec.shape == (n, 16) and vec.dtype == np.float32
    assert ids2.tolist() == out_ids.tolist() and sorted(ids2.tolist()) == ids.tolist()
    assert np.allclose(vec, rep.embed(read_images(tmp_path / "images.parquet", ids2)[1]), atol=1e-5)
    import pyarrow as pa
    import pyarrow.parquet as pq

    typ = pq.read_schema(tmp_path / "emb.parquet").field("embedding").type
    assert pa.types.is_fixed_size_list(typ) and typ.list_size == 16 and typ.value_type == pa.float32()
    frac = rep.predict(tiny_images(3))
    q1 = [KAGGLE_COLUMNS.index(c) for c in ("Class1.1", "Class1.2", "Class1.3")]
    assert np.allclose(frac[:, q1].sum(1), 1, atol=1e-5)
    xy, method = embedding_map(vec, "pca")
    assert xy.shape == (n, 2) and method == "pca"
    with pytest.raises(InputError, match="expects 16×16"):
        rep.embed(tiny_images(2, size=20))


def test_the_map_of_a_large_table_is_fitted_on_a_sample_and_projects_the_rest(tmp_path):
    """Up to fit_rows galaxies the map is embedding_map of them all; beyond, PCA fitted on a seeded
    sample of fit_rows, every galaxy projected into it batch by batch, in file order."""
    from sklearn.decomposition import PCA

    from gzmorph.represent import map_table

    rng = np.random.default_rng(1)
    vectors = rng.normal(size=(57, 6)).astype(np.float32) * np.arange(1, 7, dtype=np.float32)
    names = np.array([f"g{i}" for i in range(57)], dtype=object)
    write_embeddings(tmp_path / "e.parquet", names, vectors)
    ids, xy, method = map_table(tmp_path / "e.parquet", "pca", seed=3, fit_rows=57)
    whole, _ = embedding_map(vectors, "pca", seed=3)
    assert method == "pca" and ids.tolist() == names.tolist() and np.allclose(xy, whole, atol=1e-5)
    ids, xy, method = map_table(tmp_path / "e.parquet", "pca", seed=3, fit_rows=20)
    sample = np.random.default_rng(3).choice(57, 20, replace=False)
    expected = PCA(n_components=2, random_state=3).fit(vectors[np.sort(sample)]).transform(vectors)
    assert ids.tolist() == names.tolist() and xy.shape == (57, 2) and np.allclose(xy, expected, atol=1e-5)
    assert not np.allclose(xy, whole, atol=1e-3)  # another fit than the whole table's


def test_write_embeddings_roundtrip_and_bad_model_file(tmp_path):
    write_embeddings(tmp_path / "e.parquet", [3, 1], np.ones((2, 4)))
    ids, vec = read_embeddings(tmp_path / "e.parquet")
    assert ids.tolist() == [3, 1] and vec.shape == (2, 4)
    # read a batch at a time across row groups: the same ids (strings kept) and vectors
    from gzmorph.io import parquet_stream
    from gzmorph.represent import embedding_table

    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(23, 5)).astype(np.float32)
    names = np.array([f"J{i:04d}" for i in range(23)], dtype=object)
    with parquet_stream(tmp_path / "groups.parquet") as write:
        for i in range(0, 23, 4):
            write(embedding_table(names[i:i + 4], vectors[i:i + 4]))
    for batch in (3, 7, 65_536):
        ids, vec = read_embeddings(tmp_path / "groups.parquet", batch_size=batch)
        assert ids.tolist() == names.tolist() and vec.dtype == np.float32 and np.array_equal(vec, vectors)
    picked, vec = read_embeddings(tmp_path / "groups.parquet", rows=[21, 2, 3, 9], batch_size=4)
    assert picked.tolist() == names[[2, 3, 9, 21]].tolist() and np.array_equal(vec, vectors[[2, 3, 9, 21]])
    write_embeddings(tmp_path / "none.parquet", [], np.zeros((0, 4)))
    ids, vec = read_embeddings(tmp_path / "none.parquet")
    assert len(ids) == 0 and vec.shape == (0, 0)
    (tmp_path / "bad.pt").write_bytes(b"")
    torch.save({"format": "other"}, tmp_path / "bad.pt")
    with pytest.raises(InputError, match="not a gzmorph representation"):
        load_representation(tmp_path / "bad.pt")
    with pytest.raises(InputError, match="not found"):
        load_representation(tmp_path / "missing.pt")


def test_fit_representation_learns_votes():
    """Bright vs dark images with opposite Q1 votes: a few epochs lower the loss."""
    rng = np.random.default_rng(1)
    n = 64
    bright = rng.random(n) < 0.5
    imgs = np.where(bright[:, None, None, None], 200, 30).astype(np.uint8) * np.ones((n, 16, 16, 3), np.uint8)
    counts = np.zeros((n, 37), np.int64)
    counts[bright, 0] = 30
    counts[~bright, 1] = 30
    cfg = RepresentConfig(epochs=4, batch_size=16, lr=5e-3, augment=False, progress=False,
                          model_kwargs={"widths": (4, 8, 8, 16)})
    model, norm, history = fit_representation(imgs, counts, cfg)
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    with pytest.raises(InputError, match="at least 4"):
        fit_representation(imgs[:2], counts[:2], cfg)


def test_vote_check_accepts_reached_but_unanswered_questions(gz2_dir):
    """Real GZ2 weighted fractions: a question reached by a small share with no answers is fine."""
    from gzmorph.sources import read_source

    check_vote_table(read_source("gz2", gz2_dir), where="gz2 sample")
