"""Frozen-tower feature caching and head-only training (micro towers, no downloads)."""

import pytest
import torch

from sparseclip.config import load_config
from sparseclip.data.world import World
from sparseclip.model import create_model, get_tokenizer, image_transform
from sparseclip.model.feature_cache import FeatureCache, cache_pairs, head_codes
from sparseclip.train.feature_cache import cached_batches


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


def test_cache_reused_and_head_codes_equal_the_full_model(tmp_path):
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


def _world_csv(root, n=40):
    import csv

    (root / "img").mkdir(parents=True)
    w = World(seed=5, image_size=32)
    with (root / "train.csv").open("w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["filepath", "title"])
        for i in range(n):
            img, cap, _ = w.sample(i)
            img.save(root / "img" / f"{i}.png")
            out.writerow([f"img/{i}.png", cap])
    return root / "train.csv"


def test_trainer_uses_the_cache_with_frozen_towers_and_matches_the_tower_path(tmp_path, capsys):
    from safetensors.torch import load_file

    from sparseclip.train import train
    from sparseclip.train.logger import read_log

    data = _world_csv(tmp_path / "data")
    base = ["data.kind=csv", f"data.train_data={data}", "model.freeze_image=true", "model.freeze_text=true",
            "model.allow_random_frozen=true", "train.steps=12", "train.batch_size=16", "train.log_every=2",
            "train.lr=3e-3", "train.warmup=2", "train.tensorboard=false", "train.progress=false",
            "train.ckpt_fractions=[]", "train.ckpt_every=6"]
    runs = {}
    for flag in ("true", "false"):
        cfg = load_config("micro", [*base, f"train.feature_cache={flag}", f"train.output_dir={tmp_path / flag}"])
        runs[flag] = train(cfg)
    assert "training the heads on cached tower features" in capsys.readouterr().out
    assert (runs["true"] / "features.safetensors").is_file() and not (runs["false"] / "features.safetensors").exists()
    cached, towers = read_log(runs["true"]), read_log(runs["false"])
    assert [r["step"] for r in cached] == [r["step"] for r in towers]
    for a, b in zip(cached, towers, strict=True):  # same rows in the same order, same heads: same training
        assert a["loss"] == pytest.approx(b["loss"], abs=1e-4)
        assert a["image_l0_pct"] == pytest.approx(b["image_l0_pct"], abs=1.0)
    wa, wb = (load_file(str(r / "final" / "model.safetensors")) for r in (runs["true"], runs["false"]))
    assert wa.keys() == wb.keys() and all(torch.allclose(wa[k], wb[k], atol=1e-4) for k in wa)
    # resume from the step-6 checkpoint continues exactly (the cache is read back by its key)
    cfg = load_config("micro", [*base, f"train.output_dir={runs['true']}"])
    import shutil

    shutil.rmtree(runs["true"] / "final")
    train(cfg, resume=str(runs["true"] / "checkpoints" / "step_000006"))
    wr = load_file(str(runs["true"] / "final" / "model.safetensors"))
    assert all(torch.equal(wa[k], wr[k]) for k in wa)


def test_cached_source_rank_shares_make_the_single_process_batch():
    from sparseclip.train.feature_cache import CachedPairsSource

    cache = FeatureCache(torch.arange(30.0)[:, None], -torch.arange(30.0)[:, None], {"skipped": {"empty_caption": 2}})
    whole = CachedPairsSource(cache, seed=4).batches(5, 8)
    shares = [CachedPairsSource(cache, seed=4, rank=r, world_size=2).batches(5, 4) for r in range(2)]
    for _ in range(6):  # crosses epochs (30 rows, 8 per step)
        img, txt = next(whole)
        parts = [next(s) for s in shares]
        assert torch.equal(img, torch.cat([p[0] for p in parts])) and torch.equal(txt, -img)
    assert CachedPairsSource(cache, seed=4).stats()["skipped_total"] == 2


def test_trainer_cache_path_reports_unusable_csv_in_one_line(tmp_path, capsys):
    from sparseclip.cli import main

    data = tmp_path / "bad.csv"
    data.write_text("filepath,title\nmissing1.png,a red circle\nmissing2.png,a blue star\n,\n")
    code = main(["train", "micro", "--no-progress", "--out", str(tmp_path / "run"), "data.kind=csv",
                 f"data.train_data={data}", "model.freeze_image=true", "model.freeze_text=true",
                 "model.allow_random_frozen=true"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("sparseclip: error: data.train_data:")
    assert "no usable pairs" in err[0]
