"""Data-parallel training against a real MPI (Open MPI's mpirun, several processes on this machine).

What is proven, and how:
- the collectives: allreduce at odd sizes, in uneven chunks, against a float64 sum; bcast, mean,
  agree, local rank (tests/dist_worker.py under mpirun -np 3);
- 2 ranks x batch B/2 equal 1 rank x batch B: the loss of every step within 1e-5 relative over 20
  steps, with dropout on (each rank draws its slice of the global mask) and small gradient buckets
  (so several all-reduces run while the backward is still going), the parameters checked bitwise
  equal across the ranks after every step;
- resume: from the 2-rank checkpoint on 1 rank continues the same global batches (the 1-rank
  run's losses), and on 2 ranks bit for bit;
- a rank whose parameters drift stops every rank with the divergence error;
- a killed rank stops the job, a stopped (hung) rank makes the others give up after
  ALPHA_DIST_TIMEOUT, and the last checkpoint resumes;
- helios ranks (lavapipe here) stage their gradients through host memory and match one process;
- MPICH's library (integer handles) works too, in a singleton;
- no MPI library: one line, exit 2.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from alpha.core.rng import Rng
from alpha.dist.grads import plan_buckets
from alpha.dist.world import ShardedRng
from alpha.train.checkpoint import list_steps
from conftest import require_peer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORKER = os.path.join(ROOT, "tests", "dist_worker.py")
MPIRUN = shutil.which("mpirun")
WAIT_S = 240  # generous: the machine may be loaded by other work
TEXT = ("First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n\n"
        "First Citizen:\nYou are all resolved rather to die than to famish?\n\n") * 40
TINY = ["--layers", "2", "--heads", "2", "--dim", "32", "--block", "32", "--batch", "4",
        "--dropout", "0.1", "--lr", "3e-3", "--warmup", "2", "--eval-interval", "10",
        "--eval-iters", "2", "--sample-interval", "0", "--log-interval", "1", "--quiet"]


def need_mpi() -> None:
    require_peer(MPIRUN is not None, "mpirun not found (apt-get install openmpi-bin "
                                     "libopenmpi-dev)")


def env(**extra) -> dict:
    e = dict(os.environ)
    e["PYTHONPATH"] = ROOT + os.pathsep + e.get("PYTHONPATH", "")
    e.pop("TURSO_DATABASE_URL", None)
    e.pop("ALPHA_NUM_THREADS", None)
    e.update(extra)
    return e


def mpirun_cmd(n: int, *argv: str) -> list[str]:
    return [MPIRUN, "--allow-run-as-root", "--oversubscribe", "-np", str(n), *argv]


def alpha_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "alpha", *args]


def run(cmd, cwd, timeout=WAIT_S, **extra):
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, env=env(**extra),
                       timeout=timeout)
    return r


def losses(run_dir: str) -> dict[int, float]:
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        return {row["step"]: row["loss"] for row in map(json.loads, f)}


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    d = tmp_path_factory.mktemp("dist")
    with open(d / "data.txt", "w") as f:
        f.write(TEXT)
    return d


# ---- pieces, in process -------------------------------------------------------------------


def test_buckets_cover_the_buffer_with_whole_parameters():
    entries = [("a", 0, 10), ("b", 10, 3), ("c", 13, 100), ("d", 113, 1), ("e", 114, 2)]
    buckets = plan_buckets(entries, bucket_bytes=4 * 14)
    assert buckets == [(0, 13, ["a", "b"]), (13, 100, ["c"]), (113, 3, ["d", "e"])]


def test_sharded_dropout_stream_is_the_global_stream_sliced():
    whole = Rng(5).stream("dropout")
    ranks = [ShardedRng(5, r, 3).stream("dropout") for r in range(3)]
    for n in (12, 7, 30):  # per-rank words of three successive draws
        start = whole.take(3 * n)
        for r, s in enumerate(ranks):
            assert s.take(n) == start + r * n
            assert s.position == whole.position


def test_no_mpi_library_is_one_line_and_exit_2(work):
    r = run(alpha_cmd("train", "--data", "data.txt", *TINY, "--iters", "1", "--distributed"),
            cwd=work, ALPHA_MPI_LIB="/nonexistent/libmpi.so.40")
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "ALPHA_MPI_LIB" in lines[0], \
        r.stderr


# ---- real MPI -----------------------------------------------------------------------------


def clear_rows(work, name: str, ranks: int) -> None:
    for rank in range(ranks):
        (work / f"{name}-rank{rank}.json").unlink(missing_ok=True)


def rank_rows(work, name: str, ranks: int) -> list[dict]:
    """The rows the worker's ranks wrote (tests/dist_worker.py `report`), by rank; a missing
    rank's file is left out, so the caller's count assertion names the failure."""
    rows = []
    for rank in range(ranks):
        path = work / f"{name}-rank{rank}.json"
        if path.exists():
            rows.append(json.loads(path.read_text(encoding="utf-8")))
    return rows


def test_collectives_match_a_float64_reference(work):
    need_mpi()
    clear_rows(work, "collectives", 3)
    r = run(mpirun_cmd(3, sys.executable, WORKER, "collectives"), cwd=work)
    assert r.returncode == 0, r.stdout + r.stderr
    rows = rank_rows(work, "collectives", 3)
    assert [row["rank"] for row in rows] == [0, 1, 2], r.stdout + r.stderr
    for row in rows:
        assert row["size"] == 3 and row["local_rank"] == row["rank"]
        assert row["threads"] == "1"  # 3 ranks share 2 CPUs: one kernel thread each
        for n, err in row["errors"].items():
            assert err < 1e-6, (n, err)  # float32 rounding of a 3-term sum, nothing more
        assert row["bcast"] == "from rank 0"
        assert row["mean"] == 1.0
        assert row["agree_none"] is False and row["agree_one"] is True


MPICH = "/usr/lib/x86_64-linux-gnu/libmpich.so.12"


def test_mpich_handles_work_in_a_singleton(work):
    """MPICH's integer handles (Open MPI's are addresses): one process, no launcher."""
    require_peer(os.path.exists(MPICH), "MPICH's library not found (apt-get install libmpich12)")
    r = run([sys.executable, WORKER, "collectives"], cwd=work, ALPHA_MPI_LIB=MPICH)
    assert r.returncode == 0, r.stdout + r.stderr
    row = json.loads(r.stdout.splitlines()[0])
    assert row["flavour"] == "MPICH" and row["size"] == 1 and row["bcast"] == "from rank 0"
    assert max(row["errors"].values()) == 0.0 and row["agree_one"] is True


@pytest.fixture(scope="module")
def runs(work):
    """One rank x batch 4 (plain), and 2 ranks x 2 rows of the same batch 4 (mpirun)."""
    need_mpi()
    r1 = run(alpha_cmd("train", "--data", "data.txt", *TINY, "--iters", "20",
                       "--run-dir", "one"), cwd=work)
    assert r1.returncode == 0, r1.stderr
    r2 = run(mpirun_cmd(2, *alpha_cmd("train", "--data", "data.txt", *TINY, "--iters", "20",
                                      "--checkpoint-interval", "10", "--run-dir", "two",
                                      "--distributed")),
             cwd=work, ALPHA_DIST_BUCKET_MB="0.004", ALPHA_DIST_CHECK_EVERY="1")
    assert r2.returncode == 0, r2.stdout + r2.stderr
    return losses(str(work / "one")), losses(str(work / "two"))


def test_two_ranks_match_one_rank_with_twice_the_batch(work, runs):
    one, two = runs
    assert sorted(one) == sorted(two) == list(range(1, 21))
    for step in one:
        assert abs(two[step] - one[step]) <= 1e-5 * abs(one[step]), (step, one[step], two[step])
    assert one[20] < one[1]  # it learns
    # rank 0 alone wrote the run: one metrics line per step, checkpoints from one writer
    assert sorted(os.listdir(work / "two" / "checkpoints")) == ["step-10.ckpt", "step-20.ckpt"]


def test_resume_on_one_rank_and_on_two(work, runs):
    one, two = runs
    ckpt = str(work / "two" / "checkpoints" / "step-10.ckpt")
    r = run(alpha_cmd("train", "--resume", ckpt, "--run-dir", "two-then-one", "--quiet"),
            cwd=work)
    assert r.returncode == 0, r.stderr
    later = losses(str(work / "two-then-one"))
    assert sorted(later) == list(range(11, 21))
    for step in later:  # the same global batches, now all on one rank
        assert abs(later[step] - one[step]) <= 1e-5 * abs(one[step]), (step, later[step])
    r = run(mpirun_cmd(2, *alpha_cmd("train", "--resume", ckpt, "--run-dir", "two-again",
                                     "--quiet", "--distributed")),
            cwd=work, ALPHA_DIST_BUCKET_MB="0.004")
    assert r.returncode == 0, r.stdout + r.stderr
    again = losses(str(work / "two-again"))
    assert {s: again[s] for s in range(11, 21)} == {s: two[s] for s in range(11, 21)}


def test_parameters_that_drift_stop_every_rank(work):
    need_mpi()
    clear_rows(work, "diverge", 2)
    r = run(mpirun_cmd(2, sys.executable, WORKER, "diverge", "--data", "data.txt", *TINY,
                       "--iters", "8", "--run-dir", "drift"),
            cwd=work, ALPHA_DIST_CHECK_EVERY="2")
    rows = rank_rows(work, "diverge", 2)
    assert len(rows) == 2, r.stdout + r.stderr
    for row in rows:  # rank 1 nudged a parameter after step 3's backward; step 4 checks
        assert row["step"] == 4 and "parameters diverged across ranks at step 4" in row["error"]
        assert "rank(s) 1 differ from rank 0" in row["error"]


# ---- faults -------------------------------------------------------------------------------


def rank_pids(mpirun_pid: int) -> dict[int, int]:
    """{rank: pid} of mpirun's children, read from their environment."""
    out = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            if ppid != mpirun_pid:
                continue
            with open(f"/proc/{name}/environ", "rb") as f:
                for item in f.read().split(b"\0"):
                    if item.startswith(b"OMPI_COMM_WORLD_RANK="):
                        out[int(item.split(b"=", 1)[1])] = int(name)
        except (OSError, IndexError, ValueError):
            continue
    return out


def start_long_run(work, run_dir: str, **extra) -> subprocess.Popen:
    return subprocess.Popen(
        mpirun_cmd(2, *alpha_cmd("train", "--data", "data.txt", *TINY, "--iters", "100000",
                                 "--eval-interval", "0", "--checkpoint-interval", "5",
                                 "--run-dir", run_dir, "--distributed")),
        cwd=work, env=env(**extra), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_a_checkpoint(folder, proc, timeout=WAIT_S) -> None:
    """Until `folder` holds a checkpoint (which one: retention keeps only the newest few)."""
    deadline = time.monotonic() + timeout
    while not (os.path.isdir(folder) and any(n.endswith(".ckpt") for n in os.listdir(folder))):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, f"no checkpoint in {folder}"
        time.sleep(0.1)


@pytest.mark.parametrize("fault", ["killed", "hung"])
def test_a_dead_or_hung_rank_stops_the_job_and_the_checkpoint_resumes(work, fault):
    need_mpi()
    run_dir = f"fault-{fault}"
    p = start_long_run(work, run_dir, ALPHA_DIST_TIMEOUT="5")
    try:
        wait_for_a_checkpoint(work / run_dir / "checkpoints", p)
        pids = rank_pids(p.pid)
        assert sorted(pids) == [0, 1], pids
        t0 = time.monotonic()
        os.kill(pids[1], signal.SIGKILL if fault == "killed" else signal.SIGSTOP)
        out, err = p.communicate(timeout=WAIT_S)
        stopped_in = time.monotonic() - t0
    finally:
        if p.poll() is None:
            p.kill()
            p.communicate()
    assert p.returncode != 0, err
    assert stopped_in < 60, stopped_in
    if fault == "hung":  # rank 0 gave up waiting and said why
        assert "no answer from the other ranks" in err, err
    steps = list_steps(str(work / run_dir / "checkpoints"))
    last = max(steps)
    r = run(alpha_cmd("train", "--resume", steps[last], "--iters", str(last + 2), "--quiet"),
            cwd=work)
    assert r.returncode == 0, r.stderr


def test_helios_ranks_stage_gradients_through_the_host(work):
    """Two helios ranks (both on lavapipe here: one device) against one helios process."""
    need_mpi()
    from test_helios import _have_vulkan

    require_peer(_have_vulkan(), "no Vulkan loader + lavapipe (apt: libvulkan1 "
                                 "mesa-vulkan-drivers)")
    short = [*TINY, "--iters", "4", "--eval-interval", "0", "--backend", "helios"]
    r1 = run(alpha_cmd("train", "--data", "data.txt", *short, "--run-dir", "helios-one"),
             cwd=work)
    assert r1.returncode == 0, r1.stderr
    r2 = run(mpirun_cmd(2, *alpha_cmd("train", "--data", "data.txt", *short, "--run-dir",
                                      "helios-two", "--distributed")),
             cwd=work, ALPHA_DIST_BUCKET_MB="0.004", ALPHA_DIST_CHECK_EVERY="1")
    assert r2.returncode == 0, r2.stdout + r2.stderr
    one, two = losses(str(work / "helios-one")), losses(str(work / "helios-two"))
    assert sorted(one) == sorted(two) == [1, 2, 3, 4]
    for step in one:
        assert abs(two[step] - one[step]) <= 1e-5 * abs(one[step]), (step, one[step], two[step])
