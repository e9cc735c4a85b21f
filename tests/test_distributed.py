"""Distributed training on 2 CPU processes (gloo) equals the single-process run on the concatenated batch."""

import math
import os
import socket

import pytest
import torch
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch import nn

from sparseclip.data.base import rank_indices
from sparseclip.loss import ChunkedClipLoss, ClipLoss
from sparseclip.train.accumulate import accumulate_gradients, split_batch
from sparseclip.train.distributed import (
    DistInfo,
    DistributedError,
    all_reduce_mean,
    barrier,
    cleanup,
    init_distributed,
    make_clip_loss,
    unwrap,
    wrap_ddp,
)

WORLD, LOCAL, STEP = 2, 6, 1  # 2 ranks x 6 samples; the data of step 1


class TwoHeads(nn.Module):
    """Two wide ReLU heads on fixed tower features, and a logit scale: the trainable part of a Sparse CLIP."""

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.image_head = nn.Linear(5, 24, dtype=torch.float64)
        self.text_head = nn.Linear(7, 24, dtype=torch.float64)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype) * 0.5)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(12.0), dtype=torch.float64))

    def forward(self, image, text):
        image_code, text_code = F.relu(self.image_head(image)), F.relu(self.text_head(text))
        return {"image_features": F.normalize(image_code, dim=-1), "text_features": F.normalize(text_code, dim=-1),
                "image_code": image_code, "text_code": text_code, "logit_scale": self.logit_scale.exp()}


def _data(n: int):
    """The dataset: sample i is row i (enough rows for steps 0 and 1)."""
    g = torch.Generator().manual_seed(1)
    return torch.randn(n, 5, generator=g, dtype=torch.float64), torch.randn(n, 7, generator=g, dtype=torch.float64)


def _clip(loss_fn):
    return lambda o: loss_fn(o["image_features"], o["text_features"], o["logit_scale"])


def _grads(model):
    return {n: p.grad.detach().clone() for n, p in unwrap(model).named_parameters()}


def _losses(info):
    """(name, loss) of every configuration the ranks run."""
    r, w = info.rank, info.world_size
    return [("gather_with_grad+local_loss", make_clip_loss(info)),
            ("openclip_default", ClipLoss(rank=r, world_size=w)),
            ("chunked", make_clip_loss(info, memory_efficient=True)),
            ("chunked_recompute", ChunkedClipLoss(rank=r, world_size=w, chunk_size=4, save_logits=False))]


def _rank_main(rank: int, port: int, out_dir: str) -> None:
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(WORLD), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    info = init_distributed(device="cpu")
    try:
        image_x, text_x = _data(2 * WORLD * LOCAL)
        ids = list(rank_indices(STEP, info.rank, info.world_size, LOCAL))
        batch = (image_x[ids], text_x[ids])
        results = {"info": (info.rank, info.world_size, info.backend, info.is_main, str(info.device))}
        for name, loss_fn in _losses(info):
            model = wrap_ddp(TwoHeads(), info)
            loss = _clip(loss_fn)(model(*batch))
            loss.backward()
            results[name] = (float(loss.detach()), all_reduce_mean(loss), _grads(model))
        # Accumulation over 2 micro-batches per rank, under DDP, with both distributed losses.
        for name, loss_fn in [("accum_chunked", make_clip_loss(info, memory_efficient=True, chunk_size=5)),
                              ("accum_gather", make_clip_loss(info))]:
            model = wrap_ddp(TwoHeads(), info)
            step = accumulate_gradients(model, split_batch(batch, 2), _clip(loss_fn))
            results[name] = (float(step.loss), all_reduce_mean(step.loss), _grads(model))
        barrier()
        torch.save(results, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        cleanup()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp")
    mp.spawn(_rank_main, args=(_free_port(), str(out)), nprocs=WORLD, join=True)
    return [torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(WORLD)]


@pytest.fixture(scope="module")
def single():
    """The single-process run on the concatenated batch (the global batch of step 1)."""
    image_x, text_x = _data(2 * WORLD * LOCAL)
    ids = list(rank_indices(STEP, 0, 1, WORLD * LOCAL))
    model = TwoHeads()
    loss = _clip(ClipLoss())(model(image_x[ids], text_x[ids]))
    loss.backward()
    return float(loss.detach()), _grads(model)


def _close(a, b, msg=""):
    torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12, msg=lambda m: f"{msg}: {m}")


def test_ranks_joined_with_gloo(ranks):
    assert [r["info"] for r in ranks] == [(0, 2, "gloo", True, "cpu"), (1, 2, "gloo", False, "cpu")]


@pytest.mark.parametrize("name", ["gather_with_grad+local_loss", "chunked", "chunked_recompute",
                                  "accum_chunked", "accum_gather"])
def test_exact_configurations_equal_single_process(ranks, single, name):
    ref_loss, ref_grads = single
    local = [r[name][0] for r in ranks]
    assert local[0] != pytest.approx(local[1])  # each rank reports its own local loss...
    for r in ranks:
        assert r[name][1] == pytest.approx(ref_loss, rel=1e-12)  # ...whose mean is the full-batch loss
        assert set(r[name][2]) == set(ref_grads)
        for p, g in ref_grads.items():  # DDP-averaged gradients equal the single-process ones
            _close(r[name][2][p], g, f"{name} {p}")


def test_openclip_default_scales_tower_gradients_by_world_size(ranks, single):
    # OpenCLIP's default (all-gather without gradient, full loss on every rank) gives every rank the full
    # loss, but each rank back-propagates only through its own features, so after DDP's averaging the
    # gradients through the towers are 1/world_size of the single-process ones; the logit scale's is exact.
    ref_loss, ref_grads = single
    for r in ranks:
        loss, mean, grads = r["openclip_default"]
        assert loss == pytest.approx(ref_loss, rel=1e-12) and mean == pytest.approx(ref_loss, rel=1e-12)
        for p, g in ref_grads.items():
            _close(grads[p], g if p == "logit_scale" else g / WORLD, f"default {p}")


# -- single-process behaviour of the helpers -------------------------------------------------------------

def test_init_distributed_single_process(monkeypatch):
    for var in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(var, raising=False)
    info = init_distributed(device="cpu")
    assert info == DistInfo(device=torch.device("cpu")) and info.is_main and not info.distributed
    assert all_reduce_mean(torch.tensor(2.5)) == 2.5
    assert wrap_ddp(model := nn.Linear(2, 2), info) is model and unwrap(model) is model
    assert isinstance(make_clip_loss(info), ClipLoss)
    assert isinstance(make_clip_loss(info, memory_efficient=True), ChunkedClipLoss)
    with pytest.raises(ValueError, match="semantics"):
        make_clip_loss(info, memory_efficient=True, gather_with_grad=False)
    cleanup()  # no-op


def test_init_distributed_explains_missing_launcher(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    monkeypatch.delenv("MASTER_PORT", raising=False)
    with pytest.raises(DistributedError, match="torchrun"):
        init_distributed(device="cpu")
    monkeypatch.setenv("RANK", "2")
    with pytest.raises(DistributedError, match="RANK=2"):
        init_distributed(device="cpu")


def test_rank_indices_partition_the_single_process_batch():
    for world, local in [(1, 8), (2, 4), (4, 2)]:
        for step in range(3):
            joined = [i for r in range(world) for i in rank_indices(step, r, world, local)]
            assert joined == list(rank_indices(step, 0, 1, world * local)) == list(range(step * 8, step * 8 + 8))
    assert rank_indices(step=2, rank=1, world_size=4, local_batch=2)[1] == 19
    with pytest.raises(ValueError):
        rank_indices(0, 2, 2, 4)
