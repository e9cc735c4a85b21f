"""Sparse autoencoders (SAEs) over CLIP embeddings: the post-hoc baselines Sparse CLIP is compared with.

One module, four variants that differ only in the activation and the loss (their entries in
:data:`~sparseclip.sae.kinds.SAE_KINDS`; :data:`KINDS` is their names):

- ``relu``        ReLU codes, trained with an L1 penalty (Bricken et al. 2023).
- ``topk``        keep the ``k`` largest ReLU pre-activations per input (Gao et al. 2024); L0 == k exactly.
- ``batchtopk``   keep the ``k * batch`` largest over the whole batch while training; at inference a
                  learned global threshold (running mean of the smallest kept value) replaces the batch,
                  so the mean L0 is ~k but varies per input (Bussmann et al. 2024).
- ``matryoshka``  BatchTopK whose nested prefixes of the dictionary (widths ``groups``) must each
                  reconstruct the input on their own, so early latents learn general features
                  (Bussmann et al. 2025).

Shared parametrisation: ``z = act(W_enc (x - b_dec) + b_enc)``, ``x_hat = z W_dec + b_dec`` with unit-norm
dictionary rows (re-normalised after every step). With ``normalize=True`` (default) inputs are
L2-normalised first, so the SAE works in CLIP's cosine geometry and ``decode`` returns unit-scale vectors.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn

from ..files.atomic import save_safetensors, write_text_atomic
from .kinds import SAE_KINDS, SAEKind

#: the registered SAE kinds' names (at import)
KINDS = SAE_KINDS.names()
WEIGHTS_FILE = "sae.safetensors"
CONFIG_FILE = "sae.json"


class SAEError(ValueError):
    """Bad SAE configuration, input or file (one-line message)."""


@dataclass
class SAEConfig:
    """Everything that defines an SAE's architecture (saved as JSON next to the weights)."""

    kind: str
    d: int
    width: int
    k: int | None = None
    l1: float | None = None
    normalize: bool = True
    groups: list[int] | None = None
    aux_coef: float = 1 / 32
    dead_steps: int = 100

    def __post_init__(self) -> None:
        if self.kind not in SAE_KINDS:
            raise SAEError(f"unknown SAE kind {self.kind!r}; known: {', '.join(SAE_KINDS)}")
        if self.d < 1 or self.width < 1:
            raise SAEError(f"SAE sizes must be positive (d={self.d}, width={self.width})")
        SAE_KINDS.get(self.kind).check(self)

    @property
    def entry(self) -> SAEKind:
        """The kind's registry entry."""
        return SAE_KINDS.get(self.kind)

    @property
    def sparsity_setting(self) -> float:
        """The value of the kind's sparsity setting (``k`` or ``l1``)."""
        return float(getattr(self, self.entry.param))

    @property
    def name(self) -> str:
        """A short label such as ``sae-topk-k32`` or ``sae-relu-l1=0.003``."""
        return f"sae-{self.kind}-" + self.entry.label(self)


def default_groups(width: int) -> list[int]:
    """Matryoshka prefix widths: width/16, width/8, width/4, width/2, width (fewer when width is small)."""
    sizes = sorted({max(1, width // 2 ** i) for i in range(5)})
    return sizes


def as_tensor(x) -> torch.Tensor:
    """A float32 CPU tensor from an array-like of shape (N, d)."""
    t = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x).float()
    if t.ndim != 2:
        raise SAEError(f"expected an (N, d) array of embeddings, got shape {tuple(t.shape)}")
    return t


class SAE(nn.Module):
    """A sparse autoencoder with the uniform contract ``fit`` / ``encode`` / ``decode`` / ``save`` / ``load``."""

    def __init__(self, cfg: SAEConfig, seed: int = 0):
        super().__init__()
        self.cfg = cfg
        gen = torch.Generator().manual_seed(seed)
        atoms = F.normalize(torch.randn(cfg.width, cfg.d, generator=gen), dim=-1)
        self.W_dec = nn.Parameter(atoms)  # (width, d): one unit-norm dictionary atom per row
        self.W_enc = nn.Parameter(atoms.clone())  # (width, d): initialised as the decoder's transpose
        self.b_enc = nn.Parameter(torch.zeros(cfg.width))
        self.b_dec = nn.Parameter(torch.zeros(cfg.d))
        # global inference threshold of the batch-top-k variants (calibrated at the end of training)
        self.register_buffer("threshold", torch.tensor(0.0))
        self.train_info: dict = {}

    @property
    def width(self) -> int:
        return self.cfg.width

    @property
    def name(self) -> str:
        return self.cfg.name

    # -- the contract -------------------------------------------------------------------------------
    def prepare(self, x) -> torch.Tensor:
        """The SAE's view of raw embeddings: float32, L2-normalised when ``cfg.normalize``."""
        t = as_tensor(x)
        if t.shape[1] != self.cfg.d:
            raise SAEError(f"embeddings have {t.shape[1]} dims but this SAE was built for {self.cfg.d}")
        return F.normalize(t, dim=-1) if self.cfg.normalize else t

    def pre_activations(self, x: torch.Tensor) -> torch.Tensor:
        """``W_enc (x - b_dec) + b_enc`` on prepared inputs."""
        return (x - self.b_dec) @ self.W_enc.T + self.b_enc

    def activate(self, pre: torch.Tensor, batch_mode: bool = False) -> torch.Tensor:
        """Dense codes (N, width) from pre-activations (the kind's activation; ``batch_mode``: training)."""
        return self.cfg.entry.activate(self, pre, batch_mode)

    @torch.no_grad()
    def encode(self, x, chunk: int = 4096) -> torch.Tensor:
        """Non-negative codes (N, width) of raw embeddings (N, d)."""
        t = self.prepare(x)
        outs = [self.activate(self.pre_activations(t[i:i + chunk])) for i in range(0, len(t), chunk)]
        return torch.cat(outs) if outs else torch.zeros(0, self.width)

    @torch.no_grad()
    def decode(self, codes) -> torch.Tensor:
        """Reconstructions (N, d) from codes (N, width), in the prepared (normalised) space."""
        z = torch.as_tensor(codes).float()
        return z @ self.W_dec + self.b_dec

    def reconstruct(self, x) -> torch.Tensor:
        """``decode(encode(x))``."""
        return self.decode(self.encode(x))


    # -- persistence --------------------------------------------------------------------------------
    def save(self, directory: str | Path) -> Path:
        """Write ``sae.safetensors`` (weights) and ``sae.json`` (config + training info) into ``directory``."""
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        tensors = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        save_safetensors(tensors, out / WEIGHTS_FILE, metadata={"format": "sparseclip-sae"})
        meta = {"format": "sparseclip-sae", "version": 1, "config": asdict(self.cfg), "train": self.train_info}
        write_text_atomic(out / CONFIG_FILE, json.dumps(meta, indent=2) + "\n")
        return out

    @classmethod
    def load(cls, directory: str | Path) -> SAE:
        """Load an SAE written by :meth:`save` (safetensors + JSON; nothing is unpickled)."""
        d = Path(directory)
        cfg_path, w_path = d / CONFIG_FILE, d / WEIGHTS_FILE
        if not cfg_path.is_file() or not w_path.is_file():
            raise SAEError(f"{d} is not an SAE directory (needs {CONFIG_FILE} and {WEIGHTS_FILE})")
        try:
            meta = json.loads(cfg_path.read_text())
            cfg = SAEConfig(**meta["config"])
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise SAEError(f"{cfg_path}: not a valid SAE config ({e})") from None
        sae = cls(cfg)
        try:
            sae.load_state_dict(load_file(str(w_path)))
        except RuntimeError as e:
            raise SAEError(f"{w_path}: weights do not match {cfg_path} ({str(e).splitlines()[0]})") from None
        sae.train_info = meta.get("train", {})
        sae.eval()
        return sae


def load_sae(directory: str | Path) -> SAE:
    """Load an SAE saved with :meth:`SAE.save`."""
    return SAE.load(directory)


__all__ = ["CONFIG_FILE", "KINDS", "SAE", "SAEConfig", "SAEError", "WEIGHTS_FILE", "as_tensor",
           "default_groups", "load_sae"]
