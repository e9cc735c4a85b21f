"""Frozen-tower feature caching and head-only training (micro towers, no downloads)."""

import pytest
import torch

from sparseclip.config import load_config
from sparseclip.data.world import World
from sparseclip.features_cache import FeatureCache, cache_pairs, cached_batches, head_codes, train_heads
from sparseclip.model import create_model, get_tokenizer, image_transform


def _model(**flags):
    over = [f"model.{k}={str(v).lower()}" for k, v in flags.items()]
    cfg = load_config("micro", ["train.steps=30", "train.batch_size=16", "train.log_every=10", "train.lr=3e-3",
                                "train.warmup=2", *over])
    torch.manual_seed(0)
    return create_model(cfg.model), cfg


def _pairs(n=48):
    w = World(seed=3, image_size=32)
    samples = [w.sample(i) for i in range(n)]
    return [s[0] for s in samples], [s[1] for s in samples]


def test_cache_reused_and_head_training_learns(tmp_path):
    model, cfg = _model(freeze_image=True, freeze_text=True)
    tok, tf = get_tokenizer(cfg.model, 32), image_transform(32)
    images, captions = _pairs()
    path = tmp_path / "feats.safetensors"
    cache = cache_pairs(model, tok, tf, images, captions, path=path)
    assert cache.image.shape == (48, 64) and cache.text.shape == (48, 64) and path.is_file()
    # features equal the towers' own outputs, and a second call reads the file (same key)
    with torch.no_grad():
        ref = model.towers.encode_image(torch.stack([tf(im) for im in images[:4]]))
    assert torch.allclose(cache.image[:4], ref, atol=1e-5)
    again = cache_pairs(model, tok, tf, images, captions, path=path)
    assert again.meta["key"] == cache.meta["key"] and torch.equal(again.image, cache.image)
    other = cache_pairs(model, tok, tf, images, captions[:-1] + ["something else"], path=path)
    assert other.meta["key"] != cache.meta["key"]
    towers_before = {k: v.clone() for k, v in model.towers.state_dict().items()}
    hist = train_heads(model, cache, cfg.train)
    assert len(hist) == 3 and hist[-1]["loss"] < hist[0]["loss"]
    assert all(torch.equal(v, towers_before[k]) for k, v in model.towers.state_dict().items())
    img, txt = head_codes(model, cache.image, cache.text)
    assert (img >= 0).all() and img.shape == (48, model.code_dim)
    # the codes from the cache equal the full model's codes
    with torch.no_grad():
        full = model.encode_image(torch.stack([tf(im) for im in images[:4]]))
    assert torch.allclose(img[:4], full, atol=1e-4)
    assert FeatureCache.load(path).meta["captions"][0] == captions[0]


def test_cache_needs_frozen_towers_and_batches_are_by_step():
    model, cfg = _model(freeze_image=True)
    with pytest.raises(ValueError, match="both towers must be frozen"):
        cache_pairs(model, get_tokenizer(cfg.model, 32), image_transform(32), *_pairs(4))
    it = cached_batches(10, 4, seed=1)
    seq = [next(it) for _ in range(5)]  # 20 positions: two full epochs
    assert sorted(torch.cat(seq[:2] + [seq[2][:2]]).tolist()) == list(range(10))
    assert torch.equal(next(cached_batches(10, 4, seed=1, start_step=3)), seq[3])
