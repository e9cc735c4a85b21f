import os
import shutil
from pathlib import Path

# OpenMP threads that wait for work sleep instead of spinning (set before torch loads its OpenMP runtime; the CLI
# subprocesses of the tests inherit it): on a busy shared machine two spinning threads per process make torch's
# two-thread ops many times slower (issue 38: tests/test_train.py at load 3.5 on 2 cores took 72 s spinning, 10 s
# passive). On an idle machine each thread has its core and the policy only decides how a thread waits.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest  # noqa: E402
import torch  # noqa: E402

os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

#: the shared micro run's settings (after ``train micro``): 3 steps, a checkpoint and a log line at each step
MICRO_RUN_ARGS = ("train.tensorboard=false", "train.progress=false", "train.steps=3", "train.ckpt_every=1",
                  "train.log_every=1")


@pytest.fixture
def micro_overrides(tmp_path):
    """Overrides for a seconds-long micro run writing into a temp dir."""
    return [f"train.output_dir={tmp_path / 'run'}", "train.tensorboard=false", "train.progress=false"]


def _files(run: Path) -> dict[str, tuple[int, int]]:
    """Each file of a run folder (lock files aside) with its size and modification time."""
    return {str(p.relative_to(run)): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(run.rglob("*"))
            if p.is_file() and not p.name.endswith(".lock")}


@pytest.fixture(scope="session")
def micro_run_args() -> list[str]:
    """``train`` arguments that give the shared micro run's configuration (add ``--out DIR``)."""
    return ["micro", *MICRO_RUN_ARGS]


@pytest.fixture(scope="session")
def micro_run(tmp_path_factory, micro_run_args) -> Path:
    """A finished micro run (:data:`MICRO_RUN_ARGS`), trained once per session for the tests that only read a
    run; a test that changes a run takes :func:`micro_run_copy`. At the end of the session every file is as it
    was trained (a test that wrote into it fails here)."""
    from sparseclip.cli import main

    run = tmp_path_factory.mktemp("shared") / "micro"
    assert main(["train", *micro_run_args, "--out", str(run)]) == 0
    trained = _files(run)
    yield run
    assert _files(run) == trained, "a test changed the shared micro run: use micro_run_copy to change a run"


@pytest.fixture
def micro_run_copy(micro_run, tmp_path) -> Path:
    """A copy of :func:`micro_run` of the test's own, to change."""
    return Path(shutil.copytree(micro_run, tmp_path / "micro_copy"))
