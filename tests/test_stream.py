"""The image store (layout 2, written a batch at a time) and the streamed training order."""

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from gzmorph import imageset as I
from gzmorph.io import InputError
from gzmorph.stream import StoreRows, TensorRows, n_batches


def images(n, size=8, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


@pytest.fixture
def store(tmp_path, monkeypatch):
    """300 8-px images in row groups of 64 rows (small groups, so that windows are exercised)."""
    monkeypatch.setattr(I, "GROUP_BYTES", 64 * 8 * 8 * 3)
    imgs = images(300)
    path = tmp_path / "images.parquet"
    with I.ImageWriter(path, (8, 8, 3)) as w:
        for s in range(0, 300, 50):  # written in pieces that do not match the row groups
            w.add(np.arange(s, s + 50) + 1000, imgs[s:s + 50])
    return path, imgs


def test_writer_writes_row_groups_incrementally_and_the_same_bytes_as_one_call(store, tmp_path):
    path, imgs = store
    md = pq.read_metadata(path)
    assert md.num_row_groups == 5 and md.row_group(0).num_rows == 64
    ids, back = I.read_images(path)
    assert ids.tolist() == list(range(1000, 1300)) and np.array_equal(back, imgs)
    other = tmp_path / "once.parquet"
    I.write_images(other, np.arange(1000, 1300), imgs)
    assert I.content_hash(other) == I.content_hash(path)  # the hash is of the content, not of the batching
    I.write_images(other, np.arange(1000, 1300), imgs[::-1])
    assert I.content_hash(other) != I.content_hash(path)


def test_string_ids_and_mixed_ids(tmp_path):
    path = tmp_path / "s.parquet"
    I.write_images(path, np.array(["NGC 1300", "M51"]), images(2))
    _, back = I.read_images(path, ["M51"])
    assert I.ImageStore(path).ids.tolist() == ["NGC 1300", "M51"] and np.array_equal(back[0], images(2)[1])
    with pytest.raises(InputError, match="ids of mixed types"), \
            I.ImageWriter(tmp_path / "m.parquet", (8, 8, 3)) as w:
        monkey_group = w.group
        w.add(np.arange(monkey_group), images(monkey_group))
        w.add(np.array(["a"] * monkey_group), images(monkey_group))
    assert not (tmp_path / "m.parquet").exists()


def test_a_store_of_the_old_layout_names_the_rule_to_rerun(tmp_path):
    import pyarrow as pa

    path = tmp_path / "old.parquet"
    table = pa.table({"id": [1], "image": pa.array([bytes(192)], pa.large_binary())})
    pq.write_table(table.replace_schema_metadata({b"gzmorph.image_shape": b"[8, 8, 3]"}), path)
    with pytest.raises(InputError, match=r"layout 1, written by an older gzmorph.*forcerun preprocess_images"):
        I.ImageStore(path)


def test_rows_that_fit_the_window_are_shuffled_exactly_as_an_in_memory_tensor(store):
    path, imgs = store
    rows = StoreRows(path, np.arange(10, 250))
    assert rows.fits
    x = torch.from_numpy(imgs[10:250])
    for w in (None, torch.rand(240, dtype=torch.double)):
        a = list(rows.epoch_batches(32, torch.Generator().manual_seed(5), w))
        b = list(TensorRows(x).epoch_batches(32, torch.Generator().manual_seed(5), w))
        assert len(a) == len(b) == n_batches(240, 32)
        for (ia, xa), (ib, xb) in zip(a, b):
            assert torch.equal(ia, ib) and torch.equal(xa, xb)


def test_a_window_smaller_than_the_rows_streams_each_row_once_in_a_seeded_order(store):
    path, imgs = store
    # about 100 rows per window; read in this process (workers=0), to see what each read asks for
    rows = StoreRows(path, np.arange(3, 300), window_mb=100 * 8 * 8 * 3 / 2**20, workers=0)
    assert not rows.fits
    seen_max = []
    read = rows.store.read_rows
    rows.store.read_rows = lambda r: (seen_max.append(len(r)), read(r))[1]
    epoch = list(rows.epoch_batches(32, torch.Generator().manual_seed(1)))
    assert len(epoch) == n_batches(297, 32)
    pos = torch.cat([p for p, _ in epoch]).numpy()
    assert sorted(pos.tolist()) == list(range(297))  # a permutation: every row once
    for p, x in epoch:
        assert np.array_equal(x.numpy(), imgs[3 + p.numpy()])  # each image is its row's
    assert max(seen_max) <= 128  # read a window (whole row groups up to ~100 rows) at a time
    again = torch.cat([p for p, _ in rows.epoch_batches(32, torch.Generator().manual_seed(1))]).numpy()
    other = torch.cat([p for p, _ in rows.epoch_batches(32, torch.Generator().manual_seed(2))]).numpy()
    assert np.array_equal(pos, again) and not np.array_equal(pos, other)
    # weighted draws stay inside the window's rows and follow the weights
    w = torch.zeros(297, dtype=torch.double)
    w[:10] = 1.0
    drawn = torch.cat([p for p, _ in rows.epoch_batches(32, torch.Generator().manual_seed(1), w)]).numpy()
    assert set(drawn.tolist()) <= set(range(10))
    # uniform weights over windows of unequal size: a full epoch of draws, each window's share its
    # rows' (the last row group holds 44 of the 297; by window, not by row, it would get 1/5)
    uniform = torch.ones(297, dtype=torch.double)
    last = []
    for seed in range(20):
        epoch = list(rows.epoch_batches(32, torch.Generator().manual_seed(seed), uniform))
        assert len(epoch) == n_batches(297, 32)
        drawn = torch.cat([p for p, _ in epoch]).numpy()
        last.append(np.mean(drawn >= 253))
    assert abs(np.mean(last) - 44 / 297) < 0.02, np.mean(last)


@pytest.mark.parametrize("weighted", [False, True])
def test_worker_processes_stream_exactly_what_the_training_process_reads(store, weighted):
    """Windows read by 1-3 DataLoader workers come back in the one seeded order of workers=0."""
    path, imgs = store
    w = torch.rand(297, generator=torch.Generator().manual_seed(0), dtype=torch.double) if weighted else None

    def epoch(workers):
        rows = StoreRows(path, np.arange(3, 300), window_mb=70 * 8 * 8 * 3 / 2**20, workers=workers)
        return list(rows.epoch_batches(16, torch.Generator().manual_seed(4), w)), list(rows.ordered_batches(40))

    (base, ordered) = epoch(0)
    assert torch.equal(torch.cat(ordered), torch.from_numpy(imgs[3:300]))
    assert [len(b) for b in ordered] == [40] * 7 + [17]  # batches run on across windows of ~70 rows
    for workers in (1, 2, 3):
        batches, ordered_w = epoch(workers)
        assert len(batches) == len(base)
        for (pa_, xa), (pb, xb) in zip(batches, base):
            assert torch.equal(pa_, pb) and torch.equal(xa, xb)
        assert all(torch.equal(a, b) for a, b in zip(ordered_w, ordered))


def test_a_store_damaged_under_a_worker_is_one_error_naming_it(store):
    path, _ = store
    rows = StoreRows(path, window_mb=100 * 8 * 8 * 3 / 2**20, workers=2)
    path.write_bytes(path.read_bytes()[:500])  # truncated after the rows were opened
    with pytest.raises(InputError) as err:
        list(rows.epoch_batches(32, torch.Generator().manual_seed(1)))
    assert str(path) in str(err.value) and "\n" not in str(err.value) and "Traceback" not in str(err.value)


def test_fit_on_streamed_rows_resumes_to_the_weights_of_an_uninterrupted_run(store, tmp_path):
    from gzmorph.augment import BatchTransform
    from gzmorph.train import fit

    path, _ = store
    rows = StoreRows(path, window_mb=100 * 8 * 8 * 3 / 2**20)
    y = torch.arange(300) % 3

    def train(epochs, ckdir, stop_after=None):
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(192, 3))

        def stop(epoch, row, m):
            if stop_after and epoch == stop_after:
                raise KeyboardInterrupt

        try:
            fit(model, torch.nn.CrossEntropyLoss(), (rows, y), None, epochs=epochs, batch_size=32, seed=3,
                transform=BatchTransform([0.5] * 3, [0.25] * 3), checkpoint_dir=ckdir, device="cpu",
                progress=False, on_epoch_end=stop, meta={"model": "lin"})
        except KeyboardInterrupt:
            pass
        return model.state_dict()

    whole = train(3, tmp_path / "a")
    train(3, tmp_path / "b", stop_after=1)
    resumed = train(3, tmp_path / "b")
    for k in whole:
        assert torch.equal(whole[k], resumed[k])
