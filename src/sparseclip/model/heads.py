"""Heads: the layer each tower ends in. Every head maps a tower feature (B, in_dim) to a code (B, out_dim).

The kinds (``model.head.kind``, registry :data:`HEADS`):

- ``relu``        Sparse CLIP: wide linear then ReLU (optionally RepReLU: ReLU forward, GELU gradient).
- ``dense``       the standard CLIP projection (in_dim -> embed_dim), or identity when the tower already
                  projects (placement ``append``).
- ``linear_wide`` the same wide linear without ReLU: the parameter-matched dense control.
- ``topk``        wide linear, keep the K largest entries (after ReLU), zero the rest.

All heads share one contract (``forward(x) -> code``, ``out_dim``, ``nonnegative``, ``wide``, ``label``), so
sweeps and reports treat them alike. A new kind: subclass :class:`Head`, override ``activate`` (and
``check_config`` for its own ``model.head.options``), decorate with ``@HEADS.register("name")``.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from ..config import ConfigError, HeadConfig
from ..registry import Registry


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
    """A linear map followed by the kind's non-linearity (:meth:`activate`), optionally after normalising its
    input with the training data's statistics (:class:`InputNorm`).

    A head kind is a subclass registered in :data:`HEADS`; it declares what it is through class attributes
    (``nonnegative``: its codes are >= 0; ``wide``: ``expansion * embed_dim`` outputs, else CLIP's
    ``embed_dim``; ``label``: its name in tables), validates its own settings (:meth:`check_config`, e.g. the
    kind-specific ``model.head.options``) and may add its own parameters in ``__init__``; nothing outside the
    kind compares kind names.
    """

    nonnegative: ClassVar[bool] = False
    wide: ClassVar[bool] = True
    label: ClassVar[str] = "head"

    def __init__(self, cfg: HeadConfig, in_dim: int, out_dim: int, identity: bool = False):
        super().__init__()
        if cfg.input_norm not in INPUT_NORMS:
            raise ValueError(f"unknown input_norm {cfg.input_norm!r} ({', '.join(INPUT_NORMS)})")
        self.kind = cfg.kind
        self.norm = InputNorm(in_dim, scale=cfg.input_norm == "standardize") if cfg.input_norm != "none" else None
        self.in_dim, self.out_dim = in_dim, out_dim
        if identity:
            self.proj = nn.Identity()
        else:
            self.proj = nn.Linear(in_dim, out_dim, bias=cfg.bias)
            # OpenCLIP initialises projections with std width**-0.5.
            nn.init.normal_(self.proj.weight, std=in_dim ** -0.5)
            if cfg.bias:
                nn.init.zeros_(self.proj.bias)

    @classmethod
    def check_config(cls, cfg: HeadConfig) -> None:
        """Refuse settings this kind cannot honour (one :class:`ConfigError`); by default, any
        ``model.head.options`` (a kind that takes options overrides this)."""
        if cfg.options:
            raise ConfigError(f"model.head.options: the {cfg.kind} head takes no options, got "
                              f"{', '.join(sorted(cfg.options))}")

    @classmethod
    def name_tag(cls, cfg: HeadConfig) -> str:
        """The kind's own settings in a run's name (e.g. ``k64`` for TopK); empty by default."""
        return ""

    def activate(self, z: torch.Tensor) -> torch.Tensor:
        """The non-linearity after the projection (identity by default)."""
        return z

    #: set by the trainer when a loss term needs the pre-activations (``loss.dead_aux``): the forward then keeps
    #: them in ``last_pre`` for the model's outputs (``image_pre`` / ``text_pre``)
    keep_pre: bool = False
    last_pre: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.norm is not None:
            x = self.norm(x)
        z = self.proj(x)
        if self.keep_pre:
            self.last_pre = z
        return self.activate(z)

    def extra_repr(self) -> str:
        return f"kind={self.kind}, in={self.in_dim}, out={self.out_dim}"


#: ``model.head.kind`` -> its :class:`Head` subclass. Config validation, model building, the run names and the
#: parametrised tests read this registry; a new head kind is one decorated subclass (plus its test).
HEADS: Registry[type[Head]] = Registry("head kind", "model.head.kind")


@HEADS.register("relu")
class ReluHead(Head):
    """Sparse CLIP: wide linear then ReLU (``model.head.rep_relu``: RepReLU, a GELU gradient)."""

    nonnegative, wide, label = True, True, "ReLU head"

    def __init__(self, cfg: HeadConfig, in_dim: int, out_dim: int, identity: bool = False):
        super().__init__(cfg, in_dim, out_dim, identity)
        self.use_rep_relu = cfg.rep_relu

    def activate(self, z: torch.Tensor) -> torch.Tensor:
        return rep_relu(z) if self.use_rep_relu else F.relu(z)


@HEADS.register("dense")
class DenseHead(Head):
    """The standard CLIP projection (or identity with placement ``append``)."""

    nonnegative, wide, label = False, False, "dense head"


@HEADS.register("linear_wide")
class LinearWideHead(Head):
    """The wide linear map without ReLU: the parameter-matched dense control."""

    nonnegative, wide, label = False, True, "wide linear head"


@HEADS.register("topk")
class TopKHead(Head):
    """Wide linear, ReLU, keep the ``model.head.topk`` largest entries."""

    nonnegative, wide, label = True, True, "TopK head"

    def __init__(self, cfg: HeadConfig, in_dim: int, out_dim: int, identity: bool = False):
        super().__init__(cfg, in_dim, out_dim, identity)
        self.k = cfg.topk

    @classmethod
    def name_tag(cls, cfg: HeadConfig) -> str:
        return f"k{cfg.topk}"

    def activate(self, z: torch.Tensor) -> torch.Tensor:
        return topk_mask(F.relu(z), self.k)


def build_head(cfg: HeadConfig, in_dim: int, embed_dim: int) -> Head:
    """Build the head of kind ``cfg.kind`` for a tower whose output has ``in_dim`` features.

    With ``placement=replace`` the tower's own projection was removed and ``in_dim`` is its width;
    with ``append`` the tower still projects to ``embed_dim`` (== ``in_dim``).
    """
    cls = HEADS.get(cfg.kind)
    if not cls.wide:
        return cls(cfg, in_dim, embed_dim, identity=cfg.placement == "append")
    return cls(cfg, in_dim, cfg.expansion * embed_dim)


def create_head(kind: str, in_dim: int, out_dim: int, **settings: Any) -> Head:
    """A head of a registered ``kind`` mapping ``in_dim`` to ``out_dim`` features, other ``model.head`` settings
    from ``settings`` (validated as the config validates them)."""
    cfg = HeadConfig(kind=kind, **settings)
    cfg.validate()
    return HEADS.get(kind)(cfg, in_dim, out_dim)
