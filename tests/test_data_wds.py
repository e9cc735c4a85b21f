"""Webdataset shards as img2dataset writes them: brace patterns, '::' sources, sizes.json, a shard truncated
mid-file and bad samples counted without a crash, too many bad samples stop the run, deterministic resume."""

import io
import itertools
import json
import os
import tarfile

import pytest
import torch
from PIL import Image

from sparseclip.config import load_config
from sparseclip.data.base import DataError
from sparseclip.data.sources import build_train_source
from sparseclip.model import get_tokenizer, image_transform

pytest.importorskip("webdataset", reason="webdataset not installed (data.kind=wds)")


def _noise_png(seed: int) -> bytes:
    buf = io.BytesIO()
    Image.frombytes("RGB", (48, 48), bytes((seed * 7 + i * 13) % 251 for i in range(48 * 48 * 3))).save(buf, "PNG")
    return buf.getvalue()


def _shard(path, start, n, bad=()):
    with tarfile.open(path, "w") as t:
        for i in range(start, start + n):
            files = {"jpg": _noise_png(i), "txt": f"sample number {i}".encode(), "json": b"{}"}
            if i in bad:
                files = {"jpg": b"\xff\xd8 not a jpeg", "txt": b"broken"} if i % 2 else {"txt": b"no image"}
            for ext, data in files.items():
                ti = tarfile.TarInfo(f"{i:06d}.{ext}")
                ti.size = len(data)
                t.addfile(ti, io.BytesIO(data))


@pytest.fixture()
def shards(tmp_path):
    """Two folders: a/{0..2}.tar (8 samples each) and b/0.tar whose second half was cut mid-file."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    for k in range(3):
        _shard(tmp_path / "a" / f"{k}.tar", 8 * k, 8)
    (tmp_path / "a" / "sizes.json").write_text(json.dumps({f"{k}.tar": 8 for k in range(3)}))
    _shard(tmp_path / "b" / "0.tar", 100, 8)
    data = (tmp_path / "b" / "0.tar").read_bytes()
    (tmp_path / "b" / "0.tar").write_bytes(data[: int(len(data) * 0.6)])
    (tmp_path / "b" / "sizes.json").write_text(json.dumps({"0.tar": 8}))
    return tmp_path


def _source(spec, *extra, rank=0, world_size=1):
    cfg = load_config("micro", ["data.kind=wds", f"data.train_data={spec}", "data.image_size=16", *extra])
    return build_train_source(cfg, get_tokenizer(cfg.model, 32), image_transform(16), rank, world_size)


def test_truncated_shard_counted_no_crash(shards):
    spec = f"{shards}/a/{{0..2}}.tar::{shards}/b/0.tar"
    src = _source(spec, "data.bad_min_samples=1000", "data.shuffle_buffer=4")
    out = list(itertools.islice(src.batches(0, 5), 12))  # 60 samples: two epochs of 24 + ~4 good
    assert all(img.shape == (5, 3, 16, 16) and tok.shape == (5, 32) for img, tok in out)
    st = src.stats()
    assert st["shards"] == 4 and st["num_samples"] == 32
    assert st["skipped"].get("bad_shard", 0) >= 2  # the truncated shard, once per epoch
    assert st["seen"] == 60 and st["attempted"] == 60 + st["skipped_total"]


def test_bad_samples_counted_and_fraction_stops(tmp_path):
    _shard(tmp_path / "0.tar", 0, 12, bad={1, 2, 3, 4, 5, 6})
    src = _source(str(tmp_path / "0.tar"), "data.bad_min_samples=1000", "data.shuffle_buffer=0")
    images, tokens = next(src.batches(0, 4))
    st = src.stats()
    assert st["skipped"] == {"bad_image": 3, "missing_image": 3} and st["seen"] == 4
    tok = get_tokenizer(load_config("micro").model, 32)
    assert torch.equal(tokens, tok([f"sample number {i}" for i in (0, 7, 8, 9)]))
    src = _source(str(tmp_path / "0.tar"), "data.bad_min_samples=5", "data.max_bad_fraction=0.2")
    with pytest.raises(DataError, match=r"data.max_bad_fraction=0.2") as err:
        list(itertools.islice(src.batches(0, 4), 5))
    assert "\n" not in str(err.value)


def test_ranks_workers_and_resume_are_deterministic(shards):
    spec = f"{shards}/a/{{0..2}}.tar"
    run1 = [t for _, t in itertools.islice(_source(spec, "data.workers=2").batches(0, 4), 6)]
    run2 = [t for _, t in itertools.islice(_source(spec, "data.workers=2").batches(0, 4), 6)]
    assert all(torch.equal(a, b) for a, b in zip(run1, run2, strict=True))
    r0 = next(_source(spec, rank=0, world_size=2).batches(0, 4))[1]
    r1 = next(_source(spec, rank=1, world_size=2).batches(0, 4))[1]
    assert not torch.equal(r0, r1)  # different shards
    a = next(_source(spec, "data.shuffle_buffer=0").batches(3, 4))[1]  # step 3: 12 of 24 -> epoch 0 half
    b = next(_source(spec, "data.shuffle_buffer=0").batches(3, 4))[1]
    assert torch.equal(a, b)
    with pytest.raises(DataError, match="train_num_samples"):
        next(_source(f"{shards}/b/0.tar::{os.devnull}.tar", "data.shuffle_buffer=0").batches(2, 2))


def test_missing_shards_clear_error(tmp_path):
    with pytest.raises(DataError, match="none of the 3 shards exist"):
        _source(f"{tmp_path}/x/{{0..2}}.tar")
