"""The SAE kinds (registry :data:`SAE_KINDS`): what differs between variants, in one entry each.

An entry declares its sparsity setting (``param``: ``"k"`` or ``"l1"``), validates a config (:meth:`SAEKind.check`),
turns pre-activations into codes (:meth:`SAEKind.activate`), computes its training loss
(:meth:`SAEKind.loss`) and finishes training (:meth:`SAEKind.finish`, e.g. calibrating an inference threshold).
:class:`~sparseclip.sae.model.SAE` and :func:`~sparseclip.sae.train.fit_sae` ask the entry and never compare kind
names. A new kind: subclass :class:`SAEKind` (or a shipped kind) and ``SAE_KINDS.register("name", MyKind())``.

- ``relu``        ReLU codes, trained with an L1 penalty (Bricken et al. 2023).
- ``topk``        keep the ``k`` largest ReLU pre-activations per input (Gao et al. 2024); L0 == k exactly.
- ``batchtopk``   keep the ``k * batch`` largest over the whole batch while training; at inference a
                  learned global threshold replaces the batch (Bussmann et al. 2024).
- ``matryoshka``  BatchTopK whose nested prefixes of the dictionary (widths ``groups``) must each
                  reconstruct the input on their own (Bussmann et al. 2025).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, ClassVar

import torch
import torch.nn.functional as F

from ..registry import Registry

if TYPE_CHECKING:
    from .model import SAE, SAEConfig

#: above this share of kept latents per row, decoding through a dense (batch, width) product is cheaper than
#: gathering one dictionary row per kept latent (the AuxK loss keeps up to d/2 latents per row)
DENSE_DECODE_SHARE = 1 / 32

Triplets = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def sparse_decode(sae: SAE, n: int, rows: torch.Tensor, cols: torch.Tensor, vals: torch.Tensor) -> torch.Tensor:
    """``z W_dec`` for codes given as triplets: touches only the kept dictionary rows, or, when many are kept,
    one dense product (a gather of ``n * d / 2`` dictionary rows costs far more than the matrix product)."""
    if len(vals) > DENSE_DECODE_SHARE * n * sae.width:
        z = torch.zeros(n, sae.width, dtype=vals.dtype).index_put((rows, cols), vals, accumulate=True)
        return z @ sae.W_dec
    return torch.zeros(n, sae.cfg.d, dtype=vals.dtype).index_add(0, rows, vals[:, None] * sae.W_dec[cols])


class SAEKind:
    """A top-k style kind by default (``k`` kept latents per input, decoded from the kept ones, AuxK loss on
    dead latents); :class:`ReluSAE` overrides it for the L1 kind."""

    #: the config field that sets the kind's sparsity (``k`` or ``l1``)
    param: ClassVar[str] = "k"
    #: whether the AuxK loss on dead latents applies
    aux_loss: ClassVar[bool] = True

    def check(self, cfg: SAEConfig) -> None:
        """Refuse a config this kind cannot train (one :class:`~sparseclip.sae.model.SAEError`)."""
        from .model import SAEError

        if cfg.k is None or not 1 <= cfg.k <= cfg.width:
            raise SAEError(f"a {cfg.kind!r} SAE needs 1 <= k <= width ({cfg.width}), got k={cfg.k}")

    def label(self, cfg: SAEConfig) -> str:
        """The sparsity setting in a name (``k32``)."""
        return f"k{cfg.k}"

    def select(self, sae: SAE, pre: torch.Tensor, batch_mode: bool = False) -> Triplets:
        """The kept latents as triplets ``(rows, cols, values)`` (values >= 0): the ``k`` largest per row."""
        a = F.relu(pre)
        vals, cols = a.topk(min(sae.cfg.k, a.shape[1]), dim=1)
        rows = torch.arange(a.shape[0]).repeat_interleave(cols.shape[1])
        return rows, cols.flatten(), vals.flatten()

    def activate(self, sae: SAE, pre: torch.Tensor, batch_mode: bool = False) -> torch.Tensor:
        """Dense codes (N, width) from pre-activations."""
        rows, cols, vals = self.select(sae, pre, batch_mode)
        return torch.zeros_like(pre).index_put_((rows, cols), vals)

    def loss(self, sae: SAE, x: torch.Tensor, pre: torch.Tensor
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(loss, reconstruction error, reconstruction, indices of latents that fired, mean L0) on prepared
        inputs ``x`` with pre-activations ``pre``, in training (batch) mode."""
        n = len(x)
        rows, cols, vals = self.select(sae, pre, batch_mode=True)
        x_hat = sparse_decode(sae, n, rows, cols, vals) + sae.b_dec
        err = (x - x_hat).pow(2).sum(-1).mean()
        loss = self.extra_loss(sae, x, err, rows, cols, vals)
        return loss, err, x_hat, cols[vals > 0], (vals > 0).sum() / n

    def extra_loss(self, sae: SAE, x: torch.Tensor, err: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor,
                   vals: torch.Tensor) -> torch.Tensor:
        """The loss from the reconstruction error and the kept latents (the error itself by default)."""
        return err

    def finish(self, sae: SAE, sample: Callable[[], torch.Tensor]) -> None:
        """After training; ``sample()`` draws prepared training rows, for a kind that needs them (nothing by
        default, and nothing is drawn)."""


class ReluSAE(SAEKind):
    param, aux_loss = "l1", False

    def check(self, cfg: SAEConfig) -> None:
        from .model import SAEError

        if cfg.l1 is None or cfg.l1 < 0:
            raise SAEError("a 'relu' SAE needs l1 >= 0 (the L1 penalty coefficient)")

    def label(self, cfg: SAEConfig) -> str:
        return f"l1={cfg.l1:g}"

    def activate(self, sae: SAE, pre: torch.Tensor, batch_mode: bool = False) -> torch.Tensor:
        return F.relu(pre)

    def loss(self, sae: SAE, x: torch.Tensor, pre: torch.Tensor
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        z = F.relu(pre)
        x_hat = z @ sae.W_dec + sae.b_dec
        err = (x - x_hat).pow(2).sum(-1).mean()
        loss = err + sae.cfg.l1 * z.sum(-1).mean()
        return loss, err, x_hat, (z > 0).any(0).nonzero(as_tuple=True)[0], (z > 0).sum() / len(x)


class BatchTopKSAE(SAEKind):
    """While training the ``k * rows`` largest of the whole batch; at inference those above the calibrated
    ``threshold``."""

    def select(self, sae: SAE, pre: torch.Tensor, batch_mode: bool = False) -> Triplets:
        a = F.relu(pre)
        if batch_mode:
            vals, flat = a.flatten().topk(min(sae.cfg.k * a.shape[0], a.numel()))
            return flat // a.shape[1], flat % a.shape[1], vals
        rows, cols = (a > sae.threshold).nonzero(as_tuple=True)
        return rows, cols, a[rows, cols]

    def finish(self, sae: SAE, sample: Callable[[], torch.Tensor]) -> None:
        calibrate_threshold(sae, sample())


class MatryoshkaSAE(BatchTopKSAE):
    """BatchTopK whose nested dictionary prefixes (``groups``) each reconstruct the input."""

    def check(self, cfg: SAEConfig) -> None:
        from .model import SAEError, default_groups

        super().check(cfg)
        if cfg.groups is None:
            cfg.groups = default_groups(cfg.width)
        g = [int(v) for v in cfg.groups]
        if not g or g != sorted(set(g)) or g[0] < 1 or g[-1] != cfg.width:
            raise SAEError(f"matryoshka groups must increase strictly and end at width {cfg.width}: {g}")
        cfg.groups = g

    def extra_loss(self, sae: SAE, x: torch.Tensor, err: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor,
                   vals: torch.Tensor) -> torch.Tensor:
        loss = err
        for g in sae.cfg.groups[:-1]:
            keep = cols < g
            x_g = sparse_decode(sae, len(x), rows[keep], cols[keep], vals[keep]) + sae.b_dec
            loss = loss + (x - x_g).pow(2).sum(-1).mean()
        return loss / len(sae.cfg.groups)


@torch.no_grad()
def calibrate_threshold(sae: SAE, x: torch.Tensor) -> float:
    """Set the inference threshold of a batch-top-k SAE so that its mean L0 on ``x`` is ``k``."""
    a = F.relu(sae.pre_activations(x)).flatten()
    n_keep = min(sae.cfg.k * len(x), a.numel())
    t = float(a.topk(n_keep).values[-1]) if n_keep else 0.0
    sae.threshold.fill_(t)
    return t


#: ``kind`` of an SAE -> its :class:`SAEKind`
SAE_KINDS: Registry[SAEKind] = Registry("SAE kind", "kind")
SAE_KINDS.register("relu", ReluSAE())
SAE_KINDS.register("topk", SAEKind())
SAE_KINDS.register("batchtopk", BatchTopKSAE())
SAE_KINDS.register("matryoshka", MatryoshkaSAE())
