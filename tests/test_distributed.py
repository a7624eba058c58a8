"""Data-parallel training (gzmorph.distributed + gzmorph.train.fit) on the CPU: gloo, 2 processes
started by the real launcher (torchrun), a tiny conv net with BatchNorm (tests/ddp_target.py).

* 2 processes train the weights 1 process trains with the same global batch, to ATOL (float32
  sums in another order: the measured difference is ~1e-7; without synchronised BatchNorm it is
  ~4e-2), with uneven shares (batches of 7 over 2 ranks, a last batch of 2) and augmentation;
* a rank that raises fails the job with that rank's error, in one line;
* a rank killed outright (SIGKILL) fails the job naming it, and the rerun resumes from the last
  checkpoint to exactly the weights of an uninterrupted 2-process run;
* more processes than visible GPUs is one clear error, before anything starts (at job start
  and, for the workflow's rules, when the DAG is built).
"""

from __future__ import annotations

import io
import json
import os
import sys
import time
from pathlib import Path

import pytest
import torch

from gzmorph import distributed as D
from gzmorph.io import InputError

TESTS = Path(__file__).resolve().parent
sys.path.insert(0, str(TESTS))
import ddp_target

ATOL = 1e-5


@pytest.fixture(scope="module", autouse=True)
def ranks_find_the_target():
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")])))
        mp.setenv("OMP_NUM_THREADS", "2")
        mp.delenv("SLURM_JOB_ID", raising=False)  # run inside a Slurm allocation, launch would use srun
        yield


def run2(tmp: Path, name: str, **kwargs) -> tuple[dict, str, float]:
    """The tiny job as 2 ranks; (rank 0's result, the ranks' output, seconds)."""
    out = io.StringIO()
    t0 = time.monotonic()
    result = D.launch(ddp_target.train_tiny, {"out": str(tmp / f"{name}.pt"), **kwargs}, 2, device="cpu",
                      stream=out)
    return result, out.getvalue(), time.monotonic() - t0


@pytest.fixture(scope="module")
def two(tmp_path_factory):
    """An uninterrupted 2-process run (3 epochs)."""
    tmp = tmp_path_factory.mktemp("ddp")
    result, output, seconds = run2(tmp, "two", checkpoint_dir=str(tmp / "ck"))
    print(f"2-process run: {seconds:.1f} s")
    return {"weights": torch.load(tmp / "two.pt"), "result": result, "output": output}


def max_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max((a[k].double() - b[k].double()).abs().max().item() for k in a)


def test_two_processes_train_the_weights_of_one_process(two, tmp_path):
    one = ddp_target.train_tiny(str(tmp_path / "one.pt"))  # this process, the same global batch
    w1 = torch.load(tmp_path / "one.pt")
    init = (torch.manual_seed(0), ddp_target.model().state_dict())[1]
    assert max_diff(w1, init) > 1e-2  # it trained
    assert max_diff(w1, two["weights"]) < ATOL
    for r1, r2 in zip(one["history"], two["result"]["history"], strict=True):
        for key in ("train_loss", "val_loss", "val_accuracy"):  # reduced over the ranks
            assert r2[key] == pytest.approx(r1[key], abs=ATOL), key
    # the caller gets its own module classes back (synchronised BatchNorm only while training)
    assert two["result"]["classes"].count("BatchNorm2d") == 2
    # logs and progress from rank 0 only
    epochs = [line for line in two["output"].splitlines() if "gzmorph.train: epoch=" in line]
    assert len(epochs) == 3 and all("[rank 0]" in line for line in epochs), epochs
    assert "INFO [rank 1]" not in two["output"]


def test_a_rank_that_raises_fails_the_job_with_its_error(tmp_path):
    with pytest.raises(D.DistributedError) as err:
        run2(tmp_path, "raise", checkpoint_dir=str(tmp_path / "ck"), fail_rank=1, fail_epoch=1)
    assert str(err.value).startswith("training process rank 1 of 2 (on ")
    assert str(err.value).endswith("failed: ValueError: rank 1 gave up at epoch 1")
    assert "\n" not in str(err.value)
    # the epoch's checkpoint, written by rank 0 before the failure, is left for a rerun
    assert torch.load(tmp_path / "ck" / "last.pt", weights_only=True)["state"]["epoch"] == 1


def test_a_killed_rank_fails_the_job_and_the_rerun_resumes(two, tmp_path):
    ck = str(tmp_path / "ck")
    with pytest.raises(D.DistributedError, match=r"rank 1 of 2 died without an error \(killed by SIGKILL"):
        run2(tmp_path, "killed", checkpoint_dir=ck, fail_rank=1, fail_epoch=2, how="kill")
    assert not (tmp_path / "killed.pt").exists()
    result, output, _ = run2(tmp_path, "resumed", checkpoint_dir=ck)
    assert "resumed from" in output and "after epoch 2" in output
    assert [row["epoch"] for row in result["history"]] == [1, 2, 3]
    resumed = torch.load(tmp_path / "resumed.pt")
    assert all(torch.equal(resumed[k], two["weights"][k]) for k in resumed)  # bit-identical


def torchrun_report(*failures):
    """torchrun's failure box (its own template), the first failure as the root cause."""
    def block(i, rank, code):
        return (f"[{i}]:\n  time      : 2026-12-03_08:00:00\n  host      : h\n"
                f"  rank      : {rank} (local_rank: {rank})\n"
                f"  exitcode  : {code} (pid: {100 + rank})\n  error_file: <N/A>\n  traceback : ...")
    (r0, c0), rest = failures[0], failures[1:]
    others = "\n".join(block(i + 1, r, c) for i, (r, c) in enumerate(rest)) or "  <NO_OTHER_FAILURES>"
    return f"===\nFailures:\n{others}\n---\nRoot Cause (first observed failure):\n{block(0, r0, c0)}\n==="


def error_record(folder: Path, rank: int, t: float, message: str, type_="RuntimeError"):
    (folder / f"error.{rank}.json").write_text(json.dumps({"rank": rank, "host": "h", "type": type_,
                                                           "message": message, "input_error": False, "time": t}))


def test_the_failing_rank_is_the_earliest_error_not_torchruns_tie_break(tmp_path):
    """torchrun stamps failures to the whole second and names the lowest rank on a tie: rank 1
    raised, rank 0 then failed in its collective within the same second, and torchrun's root cause
    is rank 0.  The ranks' own records (float times) name rank 1."""
    error_record(tmp_path, 1, 100.25, "rank 1 gave up at epoch 1", "ValueError")
    error_record(tmp_path, 0, 100.26, "Connection closed by peer")
    err = D._failure(tmp_path, 1, torchrun_report((0, 1), (1, 1)), 2, "torchrun")
    assert str(err) == "training process rank 1 of 2 (on h) failed: ValueError: rank 1 gave up at epoch 1"


def test_a_rank_killed_without_a_record_is_the_cause_wherever_torchrun_lists_it(tmp_path):
    error_record(tmp_path, 0, 100.26, "Connection closed by peer")
    decoy = ("[rank 0] Failures: 0 of 3 batches\n"  # a rank's own output before torchrun's box
             "torch.distributed.elastic.multiprocessing.api: failed (exitcode: 1) local_rank: 0 (pid: 100)\n")
    for report in (torchrun_report((0, 1), (1, -9)), torchrun_report((1, -9), (0, 1)),
                   decoy + torchrun_report((0, 1), (1, -9))):
        err = D._failure(tmp_path, 1, report, 2, "torchrun")
        assert "rank 1 of 2 died without an error (killed by SIGKILL" in str(err), str(err)
    # SIGTERM is torchrun stopping the rest, not a cause
    err = D._failure(tmp_path, 1, torchrun_report((0, 1), (1, -15)), 2, "torchrun")
    assert str(err) == "training process rank 0 of 2 (on h) failed: RuntimeError: Connection closed by peer"
    # a rank torchrun stopped itself (SIGTERM, then SIGKILL 30 s later when stuck in a collective)
    error_record(tmp_path, 1, 100.30, "rank 1 gave up", "ValueError")
    (tmp_path / "error.0.json").unlink()
    stuck = "WARNING Sending process 100 closing signal SIGTERM\n" + torchrun_report((1, 1), (0, -9))
    assert str(D._failure(tmp_path, 1, stuck, 2, "torchrun")).endswith("rank 1 gave up")


def test_srun_names_its_first_failed_task(tmp_path):
    """srun's first error line is the bad exit --kill-on-bad-exit acts on; the tasks it stops follow
    (grouped per node as "tasks 0-1"); the ranks' clocks may differ across nodes, so its first task's
    own record is the cause even where another rank's record has an earlier time."""
    error_record(tmp_path, 0, 99.0, "Connection closed by peer")
    srun = "srun: error: n2: task 1: Killed\nsrun: error: n1: tasks 0,2-3: Killed\n"
    assert "rank 1 of 4 died without an error (Killed" in str(D._failure(tmp_path, 137, srun, 4, "srun"))
    srun = "srun: error: n1: tasks 2-3: Killed\nsrun: error: n2: task 1: Killed\n"
    assert "rank 2 of 4 died without an error (Killed" in str(D._failure(tmp_path, 137, srun, 4, "srun"))
    error_record(tmp_path, 1, 100.0, "rank 1 gave up", "ValueError")
    srun = "srun: error: n2: task 1: Exited with exit code 1\nsrun: error: n1: task 0: Killed\n"
    assert str(D._failure(tmp_path, 1, srun, 2, "srun")).endswith("failed: ValueError: rank 1 gave up")
    # cancelled from outside (scancel, the time limit): no rank is the cause
    srun = "srun: error: n1: tasks 0-1: Terminated\n"
    err = str(D._failure(tmp_path / "none", 143, srun, 2, "srun"))
    assert err.startswith("the 2 training processes failed (srun exit status 143: srun: error: n1: tasks 0-1"), err


def test_one_process_runs_here_without_torch_distributed():
    assert D.launch(os.getpid, {}, 1) == os.getpid()
    assert D.world() == 1 and D.rank() == 0 and D.is_main()


def test_more_processes_than_visible_gpus_is_one_error_before_anything_starts(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    started = []
    with pytest.raises(InputError, match=r"^2 training processes need one GPU each \(device 'cuda'\), but the "
                                         r"visible GPUs are 1 \(CUDA_VISIBLE_DEVICES=0\)$"):
        D.launch(started.append, {"x": 1}, 2, device="cuda")
    # at DAG build: a local run of a rule asking for 2 processes on a 1-GPU machine
    with pytest.raises(InputError, match="classify.processes: 2 training processes need one GPU each, but this "
                                         "machine shows 1"):
        D.rule_resources(2, 1, "auto", "classify", argv=["--cores", "2"])
    with pytest.raises(InputError, match="needs? a cluster executor"):
        D.rule_resources(2, 2, "auto", "classify", argv=[])
    # a cluster executor: Slurm decides what exists
    assert D.rule_resources(4, 2, "auto", argv=["--executor", "slurm"]) == {
        "gpu": 4, "tasks": 4, "tasks_per_gpu": 1, "nodes": 2, "mpi": "srun"}
    # no GPU here: the processes share the CPU as one gpu-counted job; one process: as before
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert D.rule_resources(2, argv=[])["gpu"] == 1
    assert D.check_local_gpus(2, "auto") == []
    assert D.rule_resources(1, argv=[]) == {"gpu": 1, "tasks": None, "tasks_per_gpu": None, "nodes": None,
                                            "mpi": None}


def test_a_stage_on_the_cpu_device_asks_for_no_gpu():
    """``device: cpu`` (a cluster without GPUs): no GPU in the rule's resources, so Slurm gets
    ``--cpus-per-task`` and no ``--gpus``, and a local run does not queue the job behind GPU jobs."""
    from gzmorph.gpu import job_gpus

    assert [job_gpus(d) for d in ("cpu", "CPU", "auto", "cuda", "cuda:1")] == [0, 0, 1, 1, 1]
    none = {"tasks": None, "tasks_per_gpu": None, "nodes": None, "mpi": None}
    assert D.rule_resources(1, 1, "cpu", argv=[]) == {"gpu": 0, **none}
    assert D.rule_resources(4, 2, "cpu", argv=["--executor", "slurm"]) == {
        "gpu": 0, "tasks": 4, "tasks_per_gpu": None, "nodes": 2, "mpi": "srun"}
    assert D.rule_resources(2, 1, "cpu", argv=[])["gpu"] == 0
    with pytest.raises(InputError, match="needs? a cluster executor"):
        D.rule_resources(2, 2, "cpu", "classify", argv=[])


def test_the_world_comes_from_torchrun_or_from_srun_started_by_launch():
    assert D.env_world({}) is None
    assert D.env_world({"WORLD_SIZE": "1", "RANK": "0"}) is None
    assert D.env_world({"WORLD_SIZE": "4", "RANK": "3", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2"}) == D.World(3, 4, 1, 2)
    slurm = {"SLURM_PROCID": "5", "SLURM_NTASKS": "8", "SLURM_LOCALID": "1", "SLURM_NODEID": "2",
             "SLURM_STEP_TASKS_PER_NODE": "2(x3),2"}
    assert D.env_world(slurm) is None  # a plain Slurm job is not a data-parallel job
    assert D.env_world({**slurm, D.ENV_MARK: "srun"}) == D.World(5, 8, 1, 2)
    assert [D.share(7, r, 2) for r in (0, 1)] == [slice(0, 4), slice(4, 7)]
    assert D._first_node("gpu[07-09,12],cpu1") == "gpu07"  # scontrol's answer where it is installed


def test_a_rank_takes_its_device_by_name_or_as_a_torch_device():
    """fit passes pick_device's torch.device to init; it was split like a string."""
    import torch

    w = D.World(0, 2, 0, 2)
    assert D.rank_device(torch.device("cpu"), w) == D.rank_device("cpu", w) == torch.device("cpu")


def test_the_first_node_without_scontrol_comes_from_the_node_list_itself(monkeypatch):
    monkeypatch.setattr(D.shutil, "which", lambda name: None)
    assert D._first_node("gpu[07-09,12],cpu1") == "gpu07"
    assert D._first_node("node[3,5-6]") == "node3" and D._first_node("cpu1,gpu2") == "cpu1"
    assert D._first_node("") is None and D._first_node(None) is None


def test_a_killed_launchs_working_folder_is_removed_by_the_next(tmp_path):
    (tmp_path / f"{D.SPOOL_PREFIX}abc").mkdir()
    (tmp_path / f"{D.SPOOL_PREFIX}abc" / "spec.json").write_text("{}")
    (tmp_path / "model.pt").write_text("kept")
    assert D.sweep_spools(tmp_path) == [tmp_path / f"{D.SPOOL_PREFIX}abc"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt"] and D.sweep_spools(None) == []
