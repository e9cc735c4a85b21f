"""Levers that keep a wide ReLU head's dictionary alive at low L0 (issue "Sparse and alive").

Both need the training pairs' tower features, so both run on frozen towers trained on cached features:

- **data-aware initialisation** (``model.head.init=data``; within the paper's recipe: only the starting weights
  change): unit ``i`` of both heads is aimed at one random training pair ``j``: the image head's row at image
  ``j``'s feature and the text head's row at caption ``j``'s, each centred and made orthogonal to the modality's
  common component (its mean direction), then given a threshold along that common component so that the unit
  fires on ``model.head.init_rate`` of the training inputs. Bias-free (the towers' common component is the
  constant input a bias-free ReLU uses as its threshold), or through the bias when ``model.head.bias``. Every
  unit starts alive, sparse and paired across modalities.
- **dead-unit resampling** (``train.resample_every``; a departure, as SAE training does it): every that many
  steps, until ``train.resample_until`` of the run, the units that fire on no training input of one modality
  (counted on all cached pairs at the current weights: a pure function of the weights, so a resumed run resamples
  exactly as an uninterrupted one) are aimed afresh at random pairs as above, and their optimiser moments zeroed.
"""

from __future__ import annotations

from typing import Any

import torch

from ..config import Config, ConfigError
from ..eval.sparsity import TAU

#: rows of the cache used to set each unit's threshold (a seeded sample; all rows when fewer)
THRESHOLD_SAMPLE = 4096


def check_levers(cfg: Config, cached: bool) -> None:
    """Refuse the levers where they cannot run: they need the cached tower features."""
    on = [k for k, v in (("model.head.init=data", cfg.model.head.init == "data"),
                         ("train.resample_every", cfg.train.resample_every > 0)) if v]
    if on and not cached:
        raise ConfigError(f"{on[0]}: needs both towers frozen and trained on cached features (model.freeze_image, "
                          "model.freeze_text, a finite data set, train.feature_cache=true)")


def _generator(seed: int, step: int) -> torch.Generator:
    return torch.Generator().manual_seed(1_000_003 * (seed + 1) + step)


@torch.no_grad()
def aim_units(head: Any, feats: torch.Tensor, anchors: torch.Tensor, units: torch.Tensor, rate: float,
              gen: torch.Generator) -> None:
    """Aim ``units`` (rows of ``head.proj``) at the rows ``anchors`` of ``feats`` (tower features, (N, in_dim)),
    each firing on about ``rate`` of the inputs of a seeded sample of ``feats``; see the module docstring."""
    x = feats.float()
    mu = x.mean(0)
    mu_hat = mu / mu.norm().clamp_min(1e-12)
    u = x[anchors] - mu
    u = u - (u @ mu_hat)[:, None] * mu_hat  # orthogonal to the common component
    u = u / u.norm(dim=1, keepdim=True).clamp_min(1e-12)
    sample = x[torch.randperm(x.shape[0], generator=gen)[:THRESHOLD_SAMPLE]]
    proj = sample @ u.T  # (S, U)
    q = 1.0 - rate
    w = head.proj.weight
    scale = float(w.norm(dim=1).median())  # the head's typical row norm
    if getattr(head.proj, "bias", None) is not None:
        thr = torch.quantile(proj, q, dim=0)
        head.proj.weight[units] = (u * scale).to(w.dtype)
        head.proj.bias[units] = (-thr * scale).to(w.dtype)
        return
    common = (sample @ mu_hat).clamp_min(1e-6)  # > 0 where the common component dominates, as it does here
    beta = torch.quantile(proj / common[:, None], q, dim=0)  # fires when u.x > beta * (mu_hat.x)
    rows = u - beta[:, None] * mu_hat
    head.proj.weight[units] = (rows / rows.norm(dim=1, keepdim=True) * scale).to(w.dtype)


class DictionaryKeeper:
    """The trainer's hook for both levers: :meth:`start` once before training (data-aware initialisation of a
    fresh run), :meth:`after_step` after each optimiser step (resampling); the latter returns how many units
    it re-aimed (0 between resampling steps)."""

    def __init__(self, cfg: Config, image_feats: torch.Tensor | None, text_feats: torch.Tensor | None):
        self.cfg, self.image, self.text = cfg, image_feats, text_feats
        tc = cfg.train
        self.every, self.until = tc.resample_every, int(tc.resample_until * tc.steps)
        self.rate = cfg.model.head.init_rate

    def _aim(self, model: Any, units: torch.Tensor, gen: torch.Generator) -> None:
        anchors = torch.randint(self.image.shape[0], (units.numel(),), generator=gen)
        for head, feats in ((model.image_head, self.image), (model.text_head, self.text)):
            aim_units(head, feats.to(head.proj.weight.device), anchors, units, self.rate, gen)

    def start(self, model: Any) -> None:
        if self.cfg.model.head.init != "data":
            return
        units = torch.arange(model.image_head.proj.weight.shape[0])
        self._aim(model, units, _generator(self.cfg.train.seed, 0))

    @torch.no_grad()
    def dead_units(self, model: Any) -> torch.Tensor:
        """Units that fire (``> tau``) on no cached training input of the images or of the texts."""
        dead = None
        for head, feats in ((model.image_head, self.image), (model.text_head, self.text)):
            was = head.training
            head.eval()
            fired = torch.zeros(head.proj.weight.shape[0], dtype=torch.bool, device=head.proj.weight.device)
            for i in range(0, feats.shape[0], 4096):
                fired |= (head(feats[i:i + 4096].to(fired.device)) > TAU).any(0)
            head.train(was)
            dead = ~fired if dead is None else dead | ~fired
        return dead.nonzero().flatten().cpu()

    def after_step(self, done: int, model: Any, optimizer: torch.optim.Optimizer) -> int:
        if not self.every or done % self.every or done > self.until or done >= self.cfg.train.steps:
            return 0
        units = self.dead_units(model)
        if units.numel():
            self._aim(model, units, _generator(self.cfg.train.seed, done))
            for head in (model.image_head, model.text_head):
                for p in head.proj.parameters():
                    state = optimizer.state.get(p, {})
                    for key in ("exp_avg", "exp_avg_sq"):
                        if key in state:
                            state[key][units.to(state[key].device)] = 0
        return int(units.numel())
