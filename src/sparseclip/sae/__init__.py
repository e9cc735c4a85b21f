"""Post-hoc sparse autoencoders (SAEs) on a dense CLIP's image and text embeddings: the baselines.

Every variant has one contract::

    sae = train_sae("topk", (x_image, x_text), width=4096, k=32, steps=2000, seed=0)
    codes = sae.encode(x)          # (N, width), non-negative
    x_hat = sae.decode(codes)      # (N, d)
    sae_metrics(sae, x)            # L0, fvu, dead_frac, active_pct
    substitute(sae, image_emb, class_emb, targets)   # zero-shot acc with reconstructions
    sae.save(dir); load_sae(dir)   # safetensors + JSON
"""

from .kinds import SAE_KINDS, SAEKind, calibrate_threshold
from .metrics import fvu, sae_metrics, substitute
from .model import KINDS, SAE, SAEConfig, SAEError, default_groups, load_sae
from .suite import baseline_specs, train_baselines
from .train import fit_sae, train_sae

__all__ = ["KINDS", "SAE", "SAEConfig", "SAEKind", "SAE_KINDS", "SAEError", "baseline_specs", "calibrate_threshold",
           "default_groups", "fit_sae", "fvu", "load_sae", "sae_metrics", "substitute", "train_baselines",
           "train_sae"]
