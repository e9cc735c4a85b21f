import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture
def micro_overrides(tmp_path):
    """Overrides for a seconds-long micro run writing into a temp dir."""
    return [f"train.output_dir={tmp_path / 'run'}", "train.tensorboard=false", "train.progress=false"]
