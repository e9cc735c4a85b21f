"""Gradient accumulation that keeps the full-batch contrastive loss (feature-cache method).

Plain gradient accumulation (sum the gradients of K micro-batch losses) changes a contrastive loss: each
micro-batch only sees its own negatives. OpenCLIP's ``--accum-freq`` keeps the full-batch loss by caching
features: a first pass without gradient computes the features of all K micro-batches, then each micro-batch
is recomputed with gradient and the loss is evaluated against the cached features of the others.

:func:`accumulate_gradients` does the same with one change (the GradCache ordering, Gao et al. 2021): the
full-batch loss is evaluated once, on the cached features, and differentiated with respect to them; each
micro-batch is then recomputed with gradient and back-propagated with its slice of those feature gradients.
The parameter gradients are exactly the full-batch ones (the chain rule, split by micro-batch), the loss runs
once instead of K times, and the logit scale receives its gradient once (OpenCLIP's loop, which calls
backward K times through ``logit_scale``, adds it K times). Peak memory is one micro-batch's activations plus
the cached (B, D) outputs and their gradients.

Requirements: the model's forward must be deterministic given the RNG state (dropout is fine: the RNG state
of each micro-batch is replayed; batch-norm statistics are updated twice, as in OpenCLIP). Under DDP the
first K-1 recomputations run inside ``model.no_sync()`` so gradients are all-reduced once.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

LossFn = Callable[[dict], "torch.Tensor | dict[str, torch.Tensor]"]


@dataclass
class AccumulatedStep:
    """What one accumulated step computed (all detached)."""

    loss: torch.Tensor | dict[str, torch.Tensor]  # what ``loss_fn`` returned on the full batch
    outputs: dict[str, torch.Tensor]  # the model's outputs for the full batch, micro-batches concatenated


def _cuda_devices(batch: Sequence) -> list[int]:
    return sorted({t.device.index or 0 for t in batch if torch.is_tensor(t) and t.device.type == "cuda"})


def _rng_state(devices: list[int]):
    return torch.get_rng_state(), [torch.cuda.get_rng_state(d) for d in devices]


def _set_rng_state(state, devices: list[int]) -> None:
    cpu, cuda = state
    torch.set_rng_state(cpu)
    for d, s in zip(devices, cuda, strict=True):
        torch.cuda.set_rng_state(s, d)


def _total(loss) -> torch.Tensor:
    return sum(loss.values()) if isinstance(loss, dict) else loss


def accumulate_gradients(model: nn.Module, micro_batches: Sequence[Sequence], loss_fn: LossFn, *,
                         scaler: torch.amp.GradScaler | None = None,
                         autocast: Callable[[], contextlib.AbstractContextManager] | None = None,
                         preserve_rng_state: bool = True) -> AccumulatedStep:
    """Accumulate into ``.grad`` the gradients of ``loss_fn`` on the concatenation of ``micro_batches``.

    ``model(*micro_batch)`` must return a dict of tensors (SparseCLIP's: ``image_features``,
    ``text_features``, ``logit_scale``, codes...): tensors with a batch dimension are concatenated over
    micro-batches, 0-d tensors (``logit_scale``) are taken from the first. ``loss_fn(outputs)`` returns the
    scalar loss of the full batch (or a dict of terms, summed), e.g.
    ``lambda o: clip_loss(o["image_features"], o["text_features"], o["logit_scale"])``; it may use a
    distributed loss (every rank calls it once per step). ``scaler`` (AMP fp16) scales the loss as
    ``scaler.scale(loss).backward()`` would; ``autocast`` is a factory of the autocast context for the forward
    passes and the loss. Gradients are added to ``.grad`` (zero them before, step after). Returns the
    detached loss and full-batch outputs (for logging).
    """
    if len(micro_batches) == 0:
        raise ValueError("accumulate_gradients needs at least one micro-batch")
    amp = autocast or contextlib.nullcontext
    if len(micro_batches) == 1:  # nothing to accumulate: the plain step
        with amp():
            out = model(*micro_batches[0])
            loss = loss_fn(out)
        total = _total(loss)
        (scaler.scale(total) if scaler is not None else total).backward()
        return AccumulatedStep(_detach(loss), {k: v.detach() for k, v in out.items() if torch.is_tensor(v)})

    # 1. Features of every micro-batch, without gradient; remember each one's RNG state to replay it.
    devices = _cuda_devices(micro_batches[0])
    states, cached = [], []
    with torch.no_grad():
        for mb in micro_batches:
            states.append(_rng_state(devices) if preserve_rng_state else None)
            with amp():
                cached.append(model(*mb))
    batched = [k for k, v in cached[0].items() if torch.is_tensor(v) and v.ndim >= 1]
    shared = [k for k, v in cached[0].items() if torch.is_tensor(v) and v.ndim == 0]
    sizes = [out[batched[0]].shape[0] for out in cached] if batched else []
    full = {k: torch.cat([out[k] for out in cached]) for k in batched}
    full.update({k: cached[0][k] for k in shared})
    del cached
    for k, v in full.items():
        full[k] = v.detach().requires_grad_(v.is_floating_point())

    # 2. The full-batch loss, once, and its gradient with respect to the cached outputs.
    with amp():
        loss = loss_fn(full)
    total = _total(loss)
    keys = [k for k, v in full.items() if v.requires_grad]
    grads = torch.autograd.grad(scaler.scale(total) if scaler is not None else total, [full[k] for k in keys],
                                allow_unused=True)
    grads = {k: g for k, g in zip(keys, grads, strict=True) if g is not None}

    # 3. Recompute each micro-batch with gradient and back-propagate its slice of the output gradients.
    last = len(micro_batches) - 1
    start = 0
    for j, mb in enumerate(micro_batches):
        sync = j == last or not hasattr(model, "no_sync")
        with contextlib.nullcontext() if sync else model.no_sync():
            with torch.random.fork_rng(devices=devices, enabled=preserve_rng_state):
                if preserve_rng_state:
                    _set_rng_state(states[j], devices)
                with amp():
                    out = model(*mb)
            tensors, grad_tensors = [], []
            for k, g in grads.items():
                if k in shared and j != last:  # the logit scale's gradient is applied once
                    continue
                if not out[k].requires_grad:
                    continue
                tensors.append(out[k])
                grad_tensors.append(g[start:start + sizes[j]] if k in batched else g)
            if tensors:
                torch.autograd.backward(tensors, grad_tensors)
        if sizes:
            start += sizes[j]
    return AccumulatedStep(_detach(loss), {k: v.detach() for k, v in full.items()})


def _detach(loss):
    return {k: v.detach() for k, v in loss.items()} if isinstance(loss, dict) else loss.detach()


def split_batch(batch: Sequence[torch.Tensor], micro_batches: int) -> list[tuple[torch.Tensor, ...]]:
    """Split ``(images, texts, ...)`` along dim 0 into ``micro_batches`` nearly equal parts, in order."""
    if micro_batches < 1:
        raise ValueError(f"micro_batches must be >= 1, got {micro_batches}")
    n = batch[0].shape[0]
    if micro_batches > n:
        raise ValueError(f"cannot split a batch of {n} into {micro_batches} micro-batches")
    parts = [t.tensor_split(micro_batches) for t in batch]
    return [tuple(p[j] for p in parts) for j in range(micro_batches)]
