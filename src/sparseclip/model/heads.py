"""Heads: the layer each tower ends in. Every head maps a tower feature (B, in_dim) to a code (B, out_dim).

- ``relu``        Sparse CLIP: wide linear then ReLU (optionally RepReLU: ReLU forward, GELU gradient).
- ``dense``       the standard CLIP projection (in_dim -> embed_dim), or identity when the tower already
                  projects (placement ``append``).
- ``linear_wide`` the same wide linear without ReLU: the parameter-matched dense control.
- ``topk``        wide linear, keep the K largest entries (after ReLU), zero the rest.

All heads share one contract (``forward(x) -> code``, ``out_dim``, ``nonnegative``), so sweeps and
reports treat them alike.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..config import HeadConfig


class _RepReLU(torch.autograd.Function):
    """ReLU in the forward pass, the GELU derivative in the backward pass (keeps dead units trainable)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(x)
        return x.clamp_min(0)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        (x,) = ctx.saved_tensors
        with torch.enable_grad():
            xd = x.detach().requires_grad_(True)
            (g,) = torch.autograd.grad(F.gelu(xd).sum(), xd)
        return grad * g


def rep_relu(x: torch.Tensor) -> torch.Tensor:
    """ReLU forward, GELU gradient backward (NCL's RepReLU)."""
    return _RepReLU.apply(x)


def topk_mask(x: torch.Tensor, k: int) -> torch.Tensor:
    """Keep the ``k`` largest entries of each row of ``x`` (others set to zero)."""
    k = min(k, x.shape[-1])
    vals, idx = x.topk(k, dim=-1)
    return torch.zeros_like(x).scatter(-1, idx, vals)


def _relu(head: Head, z: torch.Tensor) -> torch.Tensor:
    return rep_relu(z) if head.use_rep_relu else F.relu(z)


def _topk(head: Head, z: torch.Tensor) -> torch.Tensor:
    return topk_mask(F.relu(z), head.k)


def _linear(head: Head, z: torch.Tensor) -> torch.Tensor:
    return z


@dataclass(frozen=True)
class HeadKind:
    """What a ``model.head.kind`` is: its non-linearity after the projection, whether its codes are
    non-negative, whether it is wide (``expansion * embed_dim`` outputs) or CLIP's ``embed_dim``, and its name
    in tables."""

    activation: Callable[[Head, torch.Tensor], torch.Tensor]
    nonnegative: bool
    wide: bool
    label: str


#: ``model.head.kind`` -> :class:`HeadKind`. Config validation and the parametrised tests read this registry;
#: a new head kind is one entry here (plus its test).
HEAD_KINDS: dict[str, HeadKind] = {
    "relu": HeadKind(_relu, nonnegative=True, wide=True, label="ReLU head"),
    "dense": HeadKind(_linear, nonnegative=False, wide=False, label="dense head"),
    "linear_wide": HeadKind(_linear, nonnegative=False, wide=True, label="wide linear head"),
    "topk": HeadKind(_topk, nonnegative=True, wide=True, label="TopK head"),
}


#: ``model.head.input_norm``: what a head does to its input before projecting it
INPUT_NORMS = ("none", "center", "standardize")


class InputNorm(nn.Module):
    """Centre (and optionally scale) a tower feature with statistics of the training data.

    The mean and variance are buffers: every forward in training mode folds the batch into them (an exact
    running average over all training rows seen, Chan's parallel update), and the feature is normalised with the
    updated statistics (every row seen so far), not the batch's alone. In eval mode the statistics are frozen,
    so a row's code does not depend on the rest of its batch. They are saved with the head, so a resumed run
    continues exactly. A lever of issue 21, measured (docs/sparsity.md): on the lite pair, centring makes the
    ReLU codes dense, because a bias-free ReLU unit over centred features fires on about half of the inputs;
    the towers' common component is what lets the head place most units' thresholds outside the data.
    """

    def __init__(self, dim: int, scale: bool):
        super().__init__()
        self.scale = scale
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("var", torch.ones(dim))
        self.register_buffer("count", torch.zeros((), dtype=torch.float64))

    @torch.no_grad()
    def _update(self, x: torch.Tensor) -> None:
        x = x.detach().float().reshape(-1, x.shape[-1])
        n, m = float(self.count), float(x.shape[0])
        if m == 0:
            return
        b_mean, b_var = x.mean(0), x.var(0, unbiased=False)
        total = n + m
        delta = b_mean - self.mean
        new_mean = self.mean + delta * (m / total)
        m2 = (self.var * n if n > 0 else 0.0) + b_var * m + delta.pow(2) * (n * m / total)
        self.mean.copy_(new_mean)
        self.var.copy_(m2 / total)
        self.count.fill_(total)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            self._update(x)
        x = x - self.mean.to(x.dtype)
        if self.scale:
            x = x * torch.rsqrt(self.var.to(x.dtype) + 1e-5)
        return x

    def extra_repr(self) -> str:
        return f"scale={self.scale}"


class Head(nn.Module):
    """A linear map followed by the head's non-linearity (see module docstring), optionally after normalising
    its input with the training data's statistics (:class:`InputNorm`)."""

    def __init__(self, kind: str, in_dim: int, out_dim: int, bias: bool = False, rep_relu: bool = False,
                 topk: int = 64, identity: bool = False, input_norm: str = "none"):
        super().__init__()
        if kind not in HEAD_KINDS:
            raise ValueError(f"unknown head kind {kind!r} ({', '.join(HEAD_KINDS)})")
        if input_norm not in INPUT_NORMS:
            raise ValueError(f"unknown input_norm {input_norm!r} ({', '.join(INPUT_NORMS)})")
        self.kind = kind
        self.norm = InputNorm(in_dim, scale=input_norm == "standardize") if input_norm != "none" else None
        self.in_dim, self.out_dim = in_dim, out_dim
        self.use_rep_relu = rep_relu
        self.k = topk
        if identity:
            self.proj = nn.Identity()
        else:
            self.proj = nn.Linear(in_dim, out_dim, bias=bias)
            # OpenCLIP initialises projections with std width**-0.5.
            nn.init.normal_(self.proj.weight, std=in_dim ** -0.5)
            if bias:
                nn.init.zeros_(self.proj.bias)

    @property
    def nonnegative(self) -> bool:
        return HEAD_KINDS[self.kind].nonnegative

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.norm is not None:
            x = self.norm(x)
        return HEAD_KINDS[self.kind].activation(self, self.proj(x))

    def extra_repr(self) -> str:
        return f"kind={self.kind}, in={self.in_dim}, out={self.out_dim}"


def build_head(cfg: HeadConfig, in_dim: int, embed_dim: int) -> Head:
    """Build the head for a tower whose output has ``in_dim`` features.

    With ``placement=replace`` the tower's own projection was removed and ``in_dim`` is its width;
    with ``append`` the tower still projects to ``embed_dim`` (== ``in_dim``).
    """
    if not HEAD_KINDS[cfg.kind].wide:
        identity = cfg.placement == "append"
        return Head(cfg.kind, in_dim, embed_dim, bias=cfg.bias, identity=identity, input_norm=cfg.input_norm)
    width = cfg.expansion * embed_dim
    return Head(cfg.kind, in_dim, width, bias=cfg.bias, rep_relu=cfg.rep_relu, topk=cfg.topk,
                input_norm=cfg.input_norm)
