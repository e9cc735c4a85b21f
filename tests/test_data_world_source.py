"""The world training source: deterministic by step, rank sharding equals the single-process batch."""

import itertools

import torch

from sparseclip.config import load_config
from sparseclip.data.sources import build_train_source
from sparseclip.model import get_tokenizer, image_transform


def _source(rank=0, world_size=1, workers=0, seed=0):
    cfg = load_config("micro", [f"data.workers={workers}", f"data.train_seed={seed}"])
    tok = get_tokenizer(cfg.model, cfg.data.context_length)
    return build_train_source(cfg, tok, image_transform(cfg.data.image_size), rank, world_size)


def _take(src, start, batch, n):
    return list(itertools.islice(src.batches(start, batch), n))


def test_world_source_same_step_same_batch_and_resume():
    full = _take(_source(), 0, 4, 3)
    resumed = _take(_source(), 2, 4, 1)[0]
    assert torch.equal(full[2][0], resumed[0]) and torch.equal(full[2][1], resumed[1])
    assert not torch.equal(full[0][0], full[1][0])
    assert full[0][0].shape == (4, 3, 32, 32) and full[0][1].shape == (4, 32)
    other_seed = _take(_source(seed=5), 0, 4, 1)[0]
    assert not torch.equal(other_seed[0], full[0][0])


def test_world_source_ranks_concatenate_to_global_batch():
    single = _take(_source(), 1, 4, 1)[0]
    parts = [_take(_source(rank=r, world_size=2), 1, 2, 1)[0] for r in range(2)]
    assert torch.equal(torch.cat([p[0] for p in parts]), single[0])
    assert torch.equal(torch.cat([p[1] for p in parts]), single[1])


def test_world_source_workers_match_in_process_and_count():
    src = _source(workers=2)
    with_workers = _take(src, 0, 4, 3)
    plain = _take(_source(), 0, 4, 3)
    for a, b in zip(with_workers, plain, strict=True):
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    st = src.stats()
    assert st["seen"] == 12 and st["skipped_total"] == 0
