"""The CLIP contrastive loss (symmetric InfoNCE) with OpenCLIP's distributed semantics."""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from .eval.sparsity import TAU


def gather_features(image_features: torch.Tensor, text_features: torch.Tensor, local_loss: bool = False,
                    gather_with_grad: bool = False, rank: int = 0, world_size: int = 1):
    """All-gather features across ranks (OpenCLIP semantics).

    With ``gather_with_grad`` the gather is differentiable (``torch.distributed.nn.all_gather``);
    otherwise features from other ranks are constants and, unless ``local_loss``, this rank's own
    slice is put back with its gradient.
    """
    if gather_with_grad:
        import torch.distributed.nn as dist_nn

        all_image = torch.cat(dist_nn.all_gather(image_features), dim=0)
        all_text = torch.cat(dist_nn.all_gather(text_features), dim=0)
        return all_image, all_text
    gathered_image = [torch.zeros_like(image_features) for _ in range(world_size)]
    gathered_text = [torch.zeros_like(text_features) for _ in range(world_size)]
    dist.all_gather(gathered_image, image_features)
    dist.all_gather(gathered_text, text_features)
    if not local_loss:
        gathered_image[rank] = image_features
        gathered_text[rank] = text_features
    return torch.cat(gathered_image, dim=0), torch.cat(gathered_text, dim=0)


class ClipLoss(nn.Module):
    """Symmetric cross-entropy over image-text similarity logits (equal to ``open_clip.ClipLoss``)."""

    def __init__(self, local_loss: bool = False, gather_with_grad: bool = False, rank: int = 0,
                 world_size: int = 1):
        super().__init__()
        self.local_loss = local_loss
        self.gather_with_grad = gather_with_grad
        self.rank = rank
        self.world_size = world_size

    def logits(self, image_features: torch.Tensor, text_features: torch.Tensor,
               logit_scale: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.world_size > 1:
            all_image, all_text = gather_features(image_features, text_features, self.local_loss,
                                                  self.gather_with_grad, self.rank, self.world_size)
            if self.local_loss:
                return logit_scale * image_features @ all_text.T, logit_scale * text_features @ all_image.T
            logits_per_image = logit_scale * all_image @ all_text.T
            return logits_per_image, logits_per_image.T
        logits_per_image = logit_scale * image_features @ text_features.T
        return logits_per_image, logits_per_image.T

    def labels(self, n: int, device: torch.device) -> torch.Tensor:
        labels = torch.arange(n, device=device, dtype=torch.long)
        if self.world_size > 1 and self.local_loss:
            labels = labels + n * self.rank
        return labels

    def forward(self, image_features: torch.Tensor, text_features: torch.Tensor,
                logit_scale: torch.Tensor) -> torch.Tensor:
        logits_per_image, logits_per_text = self.logits(image_features, text_features, logit_scale)
        labels = self.labels(logits_per_image.shape[0], image_features.device)
        return (F.cross_entropy(logits_per_image, labels) + F.cross_entropy(logits_per_text, labels)) / 2


def l1_penalty(image_features: torch.Tensor, text_features: torch.Tensor) -> torch.Tensor:
    """Mean L1 norm of the (L2-normalised) codes of both modalities: the paper's rejected alternative."""
    return (image_features.abs().sum(-1).mean() + text_features.abs().sum(-1).mean()) / 2


def dead_unit_push(pre: torch.Tensor, rate: float, tau: float = TAU) -> torch.Tensor:
    """An auxiliary loss that gives a ReLU head's dead units a gradient (a departure from the paper's recipe, as
    SAE training's auxiliary losses do): the units whose code (``relu(pre)``) exceeds ``tau`` on no row of the
    batch ``pre`` (B, D) are pushed up on the ``rate`` of the rows where they are closest to firing: minus the
    mean of their ``max(1, round(rate * B))`` largest pre-activations, averaged over those units. 0 (with a
    gradient of 0) when every unit fires on the batch; a unit stops being pushed as soon as it fires."""
    dead = ~(pre > tau).any(0)
    if not bool(dead.any()):
        return pre.sum() * 0.0
    k = min(pre.shape[0], max(1, round(rate * pre.shape[0])))
    return -pre[:, dead].topk(k, dim=0).values.mean()


# -- A contrastive loss for very wide heads ------------------------------------------------------------------
#
# With wide heads the feature matrices, not the logits, are what fills memory: a (B, D) code matrix with
# B=2048, D=65,536 is 512 MiB in float32 while the (B, B) logits are 16 MiB. The naive loss (ClipLoss) keeps
# a scaled copy of the features for backward, builds several (B, D) temporaries in backward, and, across
# ranks, all-gathers (world_size*b, D) copies of both modalities plus their (world_size*b, D) gradients.
# ChunkedClipLoss computes the same loss and gradients with a custom autograd Function that
#   * never gathers features: each rank keeps its own b image rows; the text features of every rank are
#     streamed past it in chunks of `chunk_size` rows (broadcast from their owner), once in forward and once
#     in backward, and each chunk's text gradient is summed straight back to its owner (reduce);
#   * computes each (i, j) logit exactly once in the whole job (rank r owns rows i of its images), where
#     OpenCLIP's local loss computes every logit on two ranks;
#   * keeps streaming log-sum-exp statistics (row LSE locally, column LSE all-reduced as B floats);
#   * saves only the (b, B) logits for backward (or nothing, recomputing them chunk by chunk, when the
#     logits would outweigh the local features: save_logits=False, or auto when B > D);
#   * writes the feature gradients in place, chunk by chunk, into the two (b, D) outputs.
# Per-rank memory is O(b*D + chunk_size*D + b*B) instead of O(B*D).


def _acc_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.promote_types(dtype, torch.float32)


class _Layout:
    """Who holds which global rows: local batch sizes, offsets and the text-chunk schedule."""

    def __init__(self, local: int, rank: int, world_size: int, group, device: torch.device):
        self.rank, self.world_size, self.group = rank, world_size, group
        if world_size > 1:
            n = torch.tensor([local], dtype=torch.long, device=device)
            sizes = [torch.zeros_like(n) for _ in range(world_size)]
            dist.all_gather(sizes, n, group=group)
            self.sizes = [int(s) for s in sizes]
        else:
            self.sizes = [local]
        if min(self.sizes) < 1:
            raise ValueError(f"every rank needs at least one sample, got local batch sizes {self.sizes}")
        self.offsets = [sum(self.sizes[:k]) for k in range(world_size)]
        self.total = sum(self.sizes)

    def src(self, k: int) -> int:
        """Global rank of group member ``k`` (for broadcast/reduce)."""
        if self.group is None or self.world_size == 1:
            return k
        return dist.get_global_rank(self.group, k)

    def chunks(self, chunk: int):
        """(owner k, first row a in k's shard, rows c) for every text chunk, in the same order on all ranks."""
        for k in range(self.world_size):
            for a in range(0, self.sizes[k], chunk):
                yield k, a, min(chunk, self.sizes[k] - a)


def _text_chunks(text: torch.Tensor, layout: _Layout, chunk: int, buf: torch.Tensor | None):
    """Yield (k, a, c, rows) with ``rows`` the (c, D) text features of rows a..a+c of rank k's shard."""
    for k, a, c in layout.chunks(chunk):
        if k == layout.rank:
            rows = text[a:a + c]
        else:
            rows = buf[:c]
        if layout.world_size > 1:
            dist.broadcast(rows, src=layout.src(k), group=layout.group)
        yield k, a, c, rows


class _ChunkedClip(torch.autograd.Function):
    """Symmetric InfoNCE over all ranks, features never gathered. See ChunkedClipLoss.

    Few, large element-wise passes per (b, chunk) block: fused log-softmax for the log-sum-exps, the scaled
    logits saved (not the raw similarities), the logit scale folded into the gradient's coefficients."""

    @staticmethod
    def forward(ctx, image, text, logit_scale, chunk, save_logits, rank, world_size, group):  # type: ignore[override]
        image, text = image.contiguous(), text.contiguous()
        b, d = image.shape
        if text.shape != image.shape:
            raise ValueError(f"image and text features must have the same shape, got {tuple(image.shape)} "
                             f"and {tuple(text.shape)}")
        layout = _Layout(b, rank, world_size, group, image.device)
        n = layout.total
        acc = _acc_dtype(image.dtype)
        chunk = chunk or _auto_chunk(b, d, image.element_size(), world_size)
        if save_logits is None:  # keep the (b, B) logits when they are no bigger than the (b, D) features
            save_logits = n * torch.finfo(acc).bits <= d * torch.finfo(image.dtype).bits
        scale = logit_scale.detach().to(acc)
        off = layout.offsets[rank]

        row_lse = torch.full((b,), float("-inf"), dtype=acc, device=image.device)
        col_lse = torch.empty(n, dtype=acc, device=image.device)  # this rank's partial column LSE
        diag = torch.empty(b, dtype=acc, device=image.device)
        saved = torch.empty(b, n, dtype=acc, device=image.device) if save_logits else None
        buf = torch.empty(min(chunk, max(layout.sizes)), d, dtype=text.dtype, device=text.device) \
            if world_size > 1 else None
        for k, a, c, rows in _text_chunks(text, layout, chunk, buf):
            cols = slice(layout.offsets[k] + a, layout.offsets[k] + a + c)
            if saved is not None and c == n and image.dtype == acc:
                z = torch.mm(image, rows.T, out=saved)
            else:
                z = (image @ rows.T).to(acc)
            z.mul_(scale)  # (b, c) logits
            if saved is not None and z is not saved:
                saved[:, cols] = z
            if k == rank:
                diag[a:a + c] = torch.diagonal(z[a:a + c])
            lsm = F.log_softmax(z, 1)  # lse = z - log_softmax, read off column 0
            row_lse = torch.logaddexp(row_lse, z[:, 0] - lsm[:, 0])
            lsm = F.log_softmax(z, 0)
            col_lse[cols] = z[0] - lsm[0]
            del lsm, z
        if world_size > 1:  # combine the per-rank column LSEs: log(sum_r exp(lse_r))
            top = col_lse.clone()
            dist.all_reduce(top, op=dist.ReduceOp.MAX, group=group)
            col_sum = torch.exp(col_lse - top)
            dist.all_reduce(col_sum, group=group)
            col_lse = top + torch.log(col_sum)
        coef = world_size / (2 * n)
        loss = coef * ((row_lse - diag).sum() + (col_lse[off:off + b] - diag).sum())

        ctx.save_for_backward(image, text, logit_scale, row_lse, col_lse,
                              saved if saved is not None else torch.empty(0))
        ctx.layout, ctx.chunk, ctx.coef, ctx.saved_logits = layout, chunk, coef, saved is not None
        return loss

    @staticmethod
    def backward(ctx, grad_loss):  # type: ignore[override]
        image, text, logit_scale, row_lse, col_lse, saved = ctx.saved_tensors
        layout: _Layout = ctx.layout
        rank, world_size, group, chunk = layout.rank, layout.world_size, layout.group, ctx.chunk
        need_i, need_t, need_s = ctx.needs_input_grad[:3]
        acc = row_lse.dtype
        b, d = image.shape
        scale = logit_scale.detach().to(acc)
        # Each rank differentiates the global loss through the logits of its own rows; columns j belong to the
        # loss term of their owner, so their softmax is weighted by the owner's upstream gradient. With
        # P = softmax over the row, Q = softmax over the column: d loss / d logit = coef * (go_row * P +
        # go_col * Q - 2 go on the diagonal); g below is that times the logit scale (= d loss / d cosine).
        go = grad_loss.detach().to(acc).reshape(1)
        if world_size > 1:
            gos = [torch.empty_like(go) for _ in range(world_size)]
            dist.all_gather(gos, go, group=group)
            go_col = torch.cat([g.expand(s) for g, s in zip(gos, layout.sizes, strict=True)])
        else:
            go_col = go.expand(layout.total)
        w_row = go[0] * (ctx.coef * scale)
        w_col = (go_col * (ctx.coef * scale))[None, :]

        grad_image = torch.empty_like(image) if need_i else None
        grad_text = torch.empty_like(text) if need_t else None
        grad_scale = torch.zeros((), dtype=acc, device=image.device)
        buf = torch.empty(min(chunk, max(layout.sizes)), d, dtype=text.dtype, device=text.device) \
            if world_size > 1 else None
        gbuf = torch.empty_like(buf) if (buf is not None and need_t) else None
        for n_chunk, (k, a, c, rows) in enumerate(_text_chunks(text, layout, chunk, buf)):
            cols = slice(layout.offsets[k] + a, layout.offsets[k] + a + c)
            z = saved[:, cols] if ctx.saved_logits else (image @ rows.T).to(acc).mul_(scale)
            g = torch.sub(z, row_lse[:, None]).exp_().mul_(w_row)
            g.addcmul_(torch.sub(z, col_lse[None, cols]).exp_(), w_col[:, cols])
            if k == rank:
                torch.diagonal(g[a:a + c]).sub_(2 * w_row)
            if need_s:  # d loss / d scale = sum(d loss / d logit * cosine) = sum(g * z) / scale^2
                grad_scale += torch.dot(g.view(-1), z.view(-1)) if z.is_contiguous() else (g * z).sum()
            del z
            g = g.to(image.dtype)
            if need_i and n_chunk == 0:
                torch.mm(g, rows, out=grad_image)
            elif need_i:
                grad_image.addmm_(g, rows)
            if need_t:
                out = grad_text[a:a + c] if k == rank else gbuf[:c]
                torch.mm(g.T, image, out=out)
                if world_size > 1:
                    dist.reduce(out, dst=layout.src(k), group=group)
        if need_s:
            grad_scale = (grad_scale / (scale * scale)).to(logit_scale.dtype).reshape(logit_scale.shape)
        else:
            grad_scale = None
        return grad_image, grad_text, grad_scale, None, None, None, None, None


def _auto_chunk(b: int, d: int, itemsize: int, world_size: int, budget: int = 64 * 2**20) -> int:
    """Rows per text chunk: each (b, chunk) float32 block and, with several ranks, each (chunk, D) stream
    buffer stay within ``budget`` bytes. Fewer, larger chunks are faster (fewer passes over the (b, D)
    features and gradients), so one process with a modest batch takes all columns at once."""
    chunk = budget // (4 * b)
    if world_size > 1:
        chunk = min(chunk, budget // (itemsize * d))
    return max(16, chunk)


class ChunkedClipLoss(nn.Module):
    """Memory-efficient CLIP loss for very wide heads: the same loss and gradients as ClipLoss, in memory that
    grows with the local batch, not the global one.

    Semantics are OpenCLIP's exact distributed setting (``local_loss=True, gather_with_grad=True``): each rank
    returns its local loss (its rows' image->text and text->image terms, averaged over its rows), so the mean
    over ranks is the full-batch loss, and after DDP's gradient averaging every parameter gets exactly the
    gradient of the single-process loss on the concatenated batch. With ``world_size=1`` it equals
    ``ClipLoss()``. Features are never all-gathered; per rank the loss needs about
    ``(2*b + 2*chunk_size) * D`` feature-sized floats (the two gradients plus two stream buffers) and the
    ``(b, B)`` logits when ``save_logits`` (default: only when B <= D, else they are recomputed chunk by chunk
    in backward, ~1/3 more matmul work).

    Every rank must call forward and backward (the loss runs collectives in both), with equal ``chunk_size``.
    ``group`` is the process group (default: the world).
    """

    def __init__(self, rank: int = 0, world_size: int = 1, chunk_size: int | None = None,
                 save_logits: bool | None = None, group=None):
        super().__init__()
        if chunk_size is not None and chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
        self.rank, self.world_size = rank, world_size
        self.chunk_size, self.save_logits, self.group = chunk_size, save_logits, group

    def forward(self, image_features: torch.Tensor, text_features: torch.Tensor,
                logit_scale: torch.Tensor) -> torch.Tensor:
        if image_features.ndim != 2:
            raise ValueError(f"features must be (batch, dim), got shape {tuple(image_features.shape)}")
        if self.world_size > 1 and not dist.is_initialized():
            raise RuntimeError(f"ChunkedClipLoss(world_size={self.world_size}) needs an initialised process "
                               "group (see sparseclip.train.distributed.init_distributed)")
        if not torch.is_tensor(logit_scale):
            logit_scale = torch.tensor(float(logit_scale), device=image_features.device)
        # Autocast must not re-type the chunk matmuls: the features arrive in the dtype the heads produced.
        with torch.autocast(image_features.device.type, enabled=False):
            return _ChunkedClip.apply(image_features, text_features, logit_scale, self.chunk_size,
                                      self.save_logits, self.rank, self.world_size, self.group)
