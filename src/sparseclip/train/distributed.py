"""Distributed data parallel training with torchrun (NCCL on GPU, gloo on CPU), OpenCLIP-style.

A training step on ``world_size`` ranks:

    info = init_distributed()                      # reads torchrun's RANK / LOCAL_RANK / WORLD_SIZE
    model = wrap_ddp(create_model(cfg).to(info.device), info)
    loss_fn = make_clip_loss(info)                 # gathers with gradient + local loss: exact gradients
    for step in ...:
        ids = rank_indices(step, info.rank, info.world_size, local_batch)   # this rank's share of the step
        out = model(images, texts)
        loss_fn(out["image_features"], out["text_features"], out["logit_scale"]).backward()
        ...                                        # DDP has averaged the gradients over ranks
        if info.is_main: save / log
    cleanup()

With one process (no torchrun) every helper degrades to the single-process behaviour, so one code path
serves both. See docs/distributed.md.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from ..loss import ChunkedClipLoss, ClipLoss


class DistributedError(RuntimeError):
    """The distributed environment is set up inconsistently (one line, says what to fix)."""


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands in the job."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")
    backend: str | None = None  # None: no process group (single process)

    @property
    def is_main(self) -> bool:
        """True on the process that logs, evaluates and writes checkpoints (global rank 0)."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def _env_int(name: str, default: int | None = None) -> int | None:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise DistributedError(f"environment variable {name}={value!r} is not an integer") from None


def _pick_device(device: str | torch.device | None, local_rank: int) -> torch.device:
    if device is None or str(device) == "auto":
        return torch.device("cuda", local_rank) if torch.cuda.is_available() else torch.device("cpu")
    device = torch.device(device)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise DistributedError("device 'cuda' asked for but CUDA is not available")
        if device.index is None:
            device = torch.device("cuda", local_rank)
    return device


def init_distributed(device: str | torch.device | None = None, backend: str | None = None,
                     timeout_s: float = 1800.0) -> DistInfo:
    """Join the job torchrun started (or stay single-process when there is none).

    Reads ``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK`` (and ``MASTER_ADDR``/``MASTER_PORT`` through
    ``init_method="env://"``), as set by ``torchrun``. ``device``: ``None``/``"auto"`` picks
    ``cuda:LOCAL_RANK`` when CUDA is available, else the CPU; ``"cpu"`` forces the CPU (gloo) even on a GPU
    machine. ``backend``: ``None`` picks NCCL for CUDA devices and gloo for the CPU. Calling it again once
    the process group exists returns the same information.
    """
    world_size = _env_int("WORLD_SIZE", 1)
    rank = _env_int("RANK", 0)
    local_rank = _env_int("LOCAL_RANK", 0)
    if world_size < 1 or not 0 <= rank < world_size:
        raise DistributedError(f"RANK={rank} is not in [0, WORLD_SIZE={world_size})")
    dev = _pick_device(device, local_rank)
    if world_size == 1 and not dist.is_initialized():
        return DistInfo(device=dev)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if not dist.is_initialized():
        missing = [v for v in ("MASTER_ADDR", "MASTER_PORT") if not os.environ.get(v)]
        if missing:
            raise DistributedError(f"WORLD_SIZE={world_size} but {' and '.join(missing)} not set: launch with "
                                   "torchrun (or set them by hand)")
        backend = backend or ("nccl" if dev.type == "cuda" else "gloo")
        dist.init_process_group(backend=backend, init_method="env://", rank=rank, world_size=world_size,
                                timeout=datetime.timedelta(seconds=timeout_s))
    return DistInfo(rank=dist.get_rank(), local_rank=local_rank, world_size=dist.get_world_size(),
                    device=dev, backend=str(dist.get_backend()))


def cleanup() -> None:
    """Leave the process group (no-op when single-process). Call at the end of training, also on error."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def is_main() -> bool:
    """True on global rank 0, and always when not distributed."""
    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


def barrier() -> None:
    """Wait for every rank (no-op when single-process), e.g. after rank 0 wrote a checkpoint."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()




def all_reduce_mean(value: float | torch.Tensor) -> float:
    """Mean of a scalar over ranks (for logging the per-rank local loss as the full-batch loss)."""
    t = torch.as_tensor(value.detach() if torch.is_tensor(value) else value, dtype=torch.float64).reshape(1)
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        if dist.get_backend() == "nccl":
            t = t.cuda()
        dist.all_reduce(t)
        t = t / dist.get_world_size()
    return float(t)


# -- data: which samples each rank takes ---------------------------------------------------------------------




# -- model and loss -----------------------------------------------------------------------------------------

def wrap_ddp(model: nn.Module, info: DistInfo, **ddp_kwargs) -> nn.Module:
    """``DistributedDataParallel(model)`` when distributed, else ``model`` unchanged.

    ``model`` must already be on ``info.device``. Frozen towers (no trainable parameters) are fine; pass
    ``find_unused_parameters=True`` only if some trainable parameters get no gradient in a step."""
    if not info.distributed:
        return model
    from torch.nn.parallel import DistributedDataParallel as DDP

    device_ids = [info.device.index] if info.device.type == "cuda" else None
    return DDP(model, device_ids=device_ids, **ddp_kwargs)


def unwrap(model: nn.Module) -> nn.Module:
    """The model inside DDP (for checkpoints, ``clamp_logit_scale`` and evaluation)."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def make_clip_loss(info: DistInfo, memory_efficient: bool = False, local_loss: bool = True,
                   gather_with_grad: bool = True, chunk_size: int | None = None) -> nn.Module:
    """The contrastive loss for this job, as OpenCLIP builds it.

    Default: ``ClipLoss(local_loss=True, gather_with_grad=True)``, OpenCLIP's recommended setting, whose
    gradients after DDP averaging equal the single-process ones on the concatenated batch.
    ``memory_efficient=True``: :class:`~sparseclip.loss.ChunkedClipLoss` (same loss and gradients; features
    never gathered; for very wide heads); it always has the exact ``local_loss + gather_with_grad`` semantics,
    so ``local_loss``/``gather_with_grad`` must be left True. With ``gather_with_grad=False`` (OpenCLIP's
    default) the gradients through the towers are ``1/world_size`` of the single-process ones
    (see docs/distributed.md).
    """
    if memory_efficient:
        if not (local_loss and gather_with_grad):
            raise ValueError("memory_efficient loss has exactly the local_loss=True, gather_with_grad=True "
                             "semantics; do not turn those off")
        return ChunkedClipLoss(rank=info.rank, world_size=info.world_size, chunk_size=chunk_size)
    return ClipLoss(local_loss=local_loss, gather_with_grad=gather_with_grad, rank=info.rank,
                    world_size=info.world_size)
