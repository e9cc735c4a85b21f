import os

# OpenMP threads that wait for work sleep instead of spinning (set before torch loads its OpenMP runtime; the CLI
# subprocesses of the tests inherit it): on a busy shared machine two spinning threads per process make torch's
# two-thread ops many times slower (issue 38: tests/test_train.py at load 3.5 on 2 cores took 72 s spinning, 10 s
# passive). On an idle machine each thread has its core and the policy only decides how a thread waits.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest  # noqa: E402
import torch  # noqa: E402

os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture
def micro_overrides(tmp_path):
    """Overrides for a seconds-long micro run writing into a temp dir."""
    return [f"train.output_dir={tmp_path / 'run'}", "train.tensorboard=false", "train.progress=false"]
