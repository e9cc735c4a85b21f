"""Gradient accumulation with the feature cache keeps the full-batch contrastive loss and its gradients."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from sparseclip import load_config
from sparseclip.loss import ChunkedClipLoss, ClipLoss, l1_penalty
from sparseclip.model import create_model
from sparseclip.train.accumulate import accumulate_gradients, split_batch


def _grads(model):
    return {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}


def _clip(loss_fn=None, l1=0.0):
    loss_fn = loss_fn or ClipLoss()

    def fn(o):
        loss = loss_fn(o["image_features"], o["text_features"], o["logit_scale"])
        return loss + l1 * l1_penalty(o["image_code"], o["text_code"]) if l1 else loss

    return fn


@pytest.fixture(scope="module")
def micro():
    """The real SparseCLIP (micro towers, 512-wide ReLU heads) in float64, and one batch of 8."""
    torch.manual_seed(0)
    model = create_model(load_config("micro").model).double()
    g = torch.Generator().manual_seed(1)
    images = torch.randn(8, 3, 32, 32, generator=g, dtype=torch.float64)
    tokens = torch.randint(1, 1000, (8, 32), generator=g)
    return model, (images, tokens)


@pytest.mark.parametrize("loss_fn,l1", [(ClipLoss(), 0.0), (ChunkedClipLoss(chunk_size=3), 0.01)])
def test_four_micro_batches_give_the_full_batch_gradients(micro, loss_fn, l1):
    model, batch = micro
    model.zero_grad(set_to_none=True)
    full_loss = _clip(loss_fn, l1)(model(*batch))
    full_loss.backward()
    ref = _grads(model)

    model.zero_grad(set_to_none=True)
    step = accumulate_gradients(model, split_batch(batch, 4), _clip(loss_fn, l1))
    got = _grads(model)
    assert step.loss == pytest.approx(float(full_loss.detach()), rel=1e-12)
    assert step.outputs["image_features"].shape == (8, model.code_dim)
    assert set(got) == set(ref) and len(ref) > 10
    for name, g in ref.items():
        torch.testing.assert_close(got[name], g, rtol=1e-8, atol=1e-12, msg=lambda m, n=name: f"{n}: {m}")


def test_plain_accumulation_would_differ(micro):
    # The property the feature cache buys: summing micro-batch losses (each with only its own negatives)
    # gives other gradients.
    model, batch = micro
    model.zero_grad(set_to_none=True)
    _clip()(model(*batch)).backward()
    ref = model.image_head.proj.weight.grad.clone()
    model.zero_grad(set_to_none=True)
    for mb in split_batch(batch, 4):
        (_clip()(model(*mb)) / 4).backward()
    assert not torch.allclose(model.image_head.proj.weight.grad, ref, rtol=1e-3)


class _Dropout(nn.Module):
    """A model whose output depends on the RNG; records every output it computes."""

    def __init__(self, p: float = 0.5):
        super().__init__()
        self.p = p
        self.lin = nn.Linear(4, 8, dtype=torch.float64)
        self.logit_scale = nn.Parameter(torch.tensor(2.0, dtype=torch.float64))
        self.seen = []

    def forward(self, x, y):
        f = F.normalize(F.dropout(F.relu(self.lin(x)), self.p, training=True), dim=-1)
        t = F.normalize(F.relu(self.lin(y)), dim=-1)
        self.seen.append(f.detach().clone())
        return {"image_features": f, "text_features": t, "logit_scale": self.logit_scale.exp()}


def test_rng_state_is_replayed_for_the_recomputation():
    model = _Dropout()
    x, y = torch.randn(6, 4, dtype=torch.float64), torch.randn(6, 4, dtype=torch.float64)
    torch.manual_seed(3)
    step = accumulate_gradients(model, split_batch((x, y), 3), _clip())
    cached, recomputed = model.seen[:3], model.seen[3:]
    assert all(torch.equal(a, b) for a, b in zip(cached, recomputed, strict=True))
    assert torch.equal(step.outputs["image_features"], torch.cat(cached))
    after = torch.rand(1)
    torch.manual_seed(3)
    for _ in range(3):  # the global RNG advanced exactly as three ordinary forward passes would
        F.dropout(torch.ones(2, 8), 0.5, training=True)
    assert torch.equal(torch.rand(1), after)


def test_openclip_loop_counts_the_logit_scale_gradient_once_per_micro_batch():
    # Why accumulate_gradients differentiates the loss once: OpenCLIP's --accum-freq loop (open_clip_train
    # train.py) back-propagates the full loss through logit_scale in each of its K passes.
    model = _Dropout(p=0.0)
    x, y = torch.randn(6, 4, dtype=torch.float64), torch.randn(6, 4, dtype=torch.float64)
    f = lambda o: ClipLoss()(o["image_features"], o["text_features"], o["logit_scale"])  # noqa: E731
    f(model(x, y)).backward()
    ref = model.logit_scale.grad.clone()

    model.zero_grad()
    mbs = split_batch((x, y), 3)
    with torch.no_grad():
        cached = [model(*mb) for mb in mbs]
    for j, mb in enumerate(mbs):  # OpenCLIP's second loop
        out = model(*mb)
        inputs = {k: torch.cat([c[k] for c in cached[:j]] + [out[k]] + [c[k] for c in cached[j + 1:]])
                  for k in ("image_features", "text_features")}
        f({**inputs, "logit_scale": out["logit_scale"]}).backward()
    torch.testing.assert_close(model.logit_scale.grad, 3 * ref)

    model.zero_grad()
    accumulate_gradients(model, mbs, f)
    torch.testing.assert_close(model.logit_scale.grad, ref)


def test_split_batch():
    parts = split_batch((torch.arange(10), torch.arange(10) * 2), 4)
    assert [len(p[0]) for p in parts] == [3, 3, 2, 2]
    assert torch.equal(torch.cat([p[1] for p in parts]), torch.arange(10) * 2)
    with pytest.raises(ValueError):
        split_batch((torch.arange(3),), 4)
    with pytest.raises(ValueError):
        accumulate_gradients(nn.Linear(1, 1), [], _clip())


def test_scaler_and_autocast_on_cpu():
    torch.manual_seed(0)
    model = nn.ModuleDict({"i": nn.Linear(6, 32), "t": nn.Linear(6, 32)})
    log_scale = nn.Parameter(torch.tensor(2.0))
    model.log_scale = log_scale

    def forward(x, y):
        return {"image_features": F.normalize(F.relu(model["i"](x)), dim=-1),
                "text_features": F.normalize(F.relu(model["t"](y)), dim=-1), "logit_scale": log_scale.exp()}

    x, y = torch.randn(12, 6), torch.randn(12, 6)
    _clip()(forward(x, y)).backward()
    ref = _grads(model)

    model.zero_grad()
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    step = accumulate_gradients(forward, split_batch((x, y), 3), _clip(ChunkedClipLoss()), scaler=scaler)
    assert torch.isfinite(step.loss)
    for name, g in ref.items():
        torch.testing.assert_close(_grads(model)[name], 1024.0 * g, rtol=1e-4, atol=1e-6)

    model.zero_grad()
    step = accumulate_gradients(forward, split_batch((x, y), 3), _clip(),
                                autocast=lambda: torch.autocast("cpu", dtype=torch.bfloat16))
    assert step.outputs["image_features"].dtype == torch.bfloat16  # the cached outputs keep autocast's dtype
    for name, g in ref.items():  # bfloat16 matmuls: close, not equal
        torch.testing.assert_close(_grads(model)[name], g, rtol=0.1, atol=0.1 * float(g.abs().max()))
