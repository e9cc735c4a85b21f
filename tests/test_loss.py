"""The CLIP loss: equal to OpenCLIP's, and the memory-efficient loss equal to the naive one."""

import open_clip
import pytest
import torch
import torch.nn.functional as F

from sparseclip.loss import ChunkedClipLoss, ClipLoss, l1_penalty


def _codes(n: int, d: int, seed: int, dtype=torch.float64, density: float = 0.3) -> torch.Tensor:
    """L2-normalised non-negative sparse codes, as a ReLU head produces them (every row non-zero)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=dtype)
    keep = torch.rand(n, d, generator=g) < density
    keep[torch.arange(n), torch.randint(d, (n,), generator=g)] = True
    return F.normalize(x.abs() * keep, dim=-1)


def _run(loss_fn, image, text, scale, upstream: float = 1.0):
    """Loss value and gradients w.r.t. both features and the log of the logit scale (a parameter)."""
    image = image.clone().requires_grad_(True)
    text = text.clone().requires_grad_(True)
    log_scale = torch.tensor(scale, dtype=image.dtype).log().requires_grad_(True)
    loss = loss_fn(image, text, log_scale.exp())
    (loss * upstream).backward()
    return loss.detach(), image.grad, text.grad, log_scale.grad


def _assert_same(a, b, rtol, atol):
    names = ("loss", "d image", "d text", "d logit_scale")
    for name, x, y in zip(names, a, b, strict=True):
        torch.testing.assert_close(x, y, rtol=rtol, atol=atol, msg=lambda m, n=name: f"{n}: {m}")


@pytest.mark.parametrize("n,d", [(1, 3), (8, 16), (37, 64)])
def test_clip_loss_equals_open_clip(n, d):
    image, text = _codes(n, d, 0, density=1.0), _codes(n, d, 1, density=1.0)
    image = image + 0.1 * _codes(n, d, 2, density=1.0).roll(1, dims=1) - 0.05  # signed features too
    ours = _run(ClipLoss(), image, text, 30.0)
    ref = _run(open_clip.ClipLoss(), image, text, 30.0)
    _assert_same(ours, ref, rtol=1e-12, atol=1e-12)
    assert n == 1 or ours[0] > 0


# (batch, width, chunk_size): divisible and non-divisible chunks, one-row chunks, a chunk larger than the
# batch, a single pair, and batches wider than the features (where the logits are not saved by default).
SIZES = [(1, 4, None), (2, 3, 1), (7, 5, 3), (8, 8, 8), (9, 9, 1), (16, 300, 5), (33, 8, 100), (40, 6, 7),
         (64, 512, 16)]


@pytest.mark.parametrize("n,d,chunk", SIZES)
@pytest.mark.parametrize("save_logits", [None, True, False])
def test_chunked_loss_equals_naive(n, d, chunk, save_logits):
    image, text = _codes(n, d, 2), _codes(n, d, 3)
    naive = _run(ClipLoss(), image, text, 14.3, upstream=1.7)
    ours = _run(ChunkedClipLoss(chunk_size=chunk, save_logits=save_logits), image, text, 14.3, upstream=1.7)
    _assert_same(ours, naive, rtol=1e-10, atol=1e-12)


def test_chunked_loss_float32_wide_and_peaked():
    # A realistic wide case in float32, with the logit scale at OpenCLIP's cap (peaked softmax).
    image, text = _codes(96, 4096, 4, torch.float32, 0.02), _codes(96, 4096, 5, torch.float32, 0.02)
    text[:48] = F.normalize(text[:48] + image[:48], dim=-1)  # half the pairs match well
    naive = _run(ClipLoss(), image, text, 100.0)
    ours = _run(ChunkedClipLoss(chunk_size=40), image, text, 100.0)
    _assert_same(ours, naive, rtol=2e-4, atol=2e-6)


def test_chunked_loss_frozen_text_tower():
    image, text = _codes(10, 12, 6), _codes(10, 12, 7)
    i1, i2 = image.clone().requires_grad_(True), image.clone().requires_grad_(True)
    ChunkedClipLoss(chunk_size=3)(i1, text, torch.tensor(10.0, dtype=image.dtype)).backward()
    ClipLoss()(i2, text, torch.tensor(10.0, dtype=image.dtype)).backward()
    torch.testing.assert_close(i1.grad, i2.grad, rtol=1e-10, atol=1e-12)


def test_chunked_loss_ignores_autocast_and_accepts_bf16():
    image, text = _codes(24, 32, 8, torch.float32), _codes(24, 32, 9, torch.float32)
    scale = torch.tensor(20.0)
    plain = ChunkedClipLoss()(image, text, scale)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        amp = ChunkedClipLoss()(image, text, scale)
    assert amp.dtype == torch.float32 and torch.equal(plain, amp)
    half = _run(ChunkedClipLoss(chunk_size=10), image.bfloat16(), text.bfloat16(), 20.0)
    full = _run(ClipLoss(), image, text, 20.0)
    assert half[0].dtype == torch.float32 and half[1].dtype == torch.bfloat16  # float32 statistics
    for a, b in zip(half, full, strict=True):  # bfloat16 has 8 bits of mantissa
        torch.testing.assert_close(a.float(), b, rtol=3e-2, atol=3e-2 * float(b.abs().max()))


def test_chunked_loss_rejects_bad_input():
    with pytest.raises(ValueError, match="chunk_size"):
        ChunkedClipLoss(chunk_size=0)
    with pytest.raises(ValueError, match="same shape"):
        ChunkedClipLoss()(torch.rand(4, 3), torch.rand(5, 3), torch.tensor(1.0))
    with pytest.raises(ValueError, match="at least one sample"):
        ChunkedClipLoss()(torch.rand(0, 3), torch.rand(0, 3), torch.tensor(1.0))
    with pytest.raises(RuntimeError, match="process group"):
        ChunkedClipLoss(rank=0, world_size=2)(torch.rand(4, 3), torch.rand(4, 3), torch.tensor(1.0))


def test_l1_penalty():
    x = torch.tensor([[3.0, -4.0], [0.0, 1.0]])
    assert float(l1_penalty(x, x)) == pytest.approx(4.0)


def _peak_alloc_bytes(fn) -> int:
    """Peak of the bytes PyTorch's CPU allocator held while ``fn`` ran, above what existed before."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    try:
        events = sorted((e.start_ns(), e.nbytes()) for e in prof.profiler.kineto_results.events()
                        if e.name() == "[memory]")
    except AttributeError:
        pytest.skip("this torch's profiler does not expose allocation events")
    cur = peak = 0
    for _, nbytes in events:
        cur += nbytes
        peak = max(peak, cur)
    return peak


def test_chunked_loss_holds_little_beyond_the_feature_gradients():
    # The memory claim, in exact allocator bytes: wide features (D >> B) in float32. The naive loss holds
    # four (B, D) tensors at its peak; the chunked one the two (B, D) gradients it returns plus the (B, B)
    # logits and block temporaries.
    n, d = 64, 8192
    image, text = _codes(n, d, 10, torch.float32, 0.05), _codes(n, d, 11, torch.float32, 0.05)
    grads = 2 * n * d * 4

    def run(loss_fn):
        i, t = image.clone().requires_grad_(True), text.clone().requires_grad_(True)
        return _peak_alloc_bytes(lambda: loss_fn(i, t, torch.tensor(50.0, requires_grad=True)).backward())

    naive, chunked = run(ClipLoss()), run(ChunkedClipLoss())
    assert naive >= 1.9 * grads
    assert chunked <= grads + 8 * n * n * 4 + 4096
