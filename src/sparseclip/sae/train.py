"""Training SAEs: one deterministic loop for every variant (Adam, balanced image/text batches)."""

from __future__ import annotations

import time
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from .kinds import sparse_decode
from .model import SAE, SAEConfig, SAEError

#: rows used to calibrate the inference threshold of the batch-top-k variants
CALIBRATION_ROWS = 4096


def _sample(sources: list[torch.Tensor], batch_size: int, gen: torch.Generator) -> torch.Tensor:
    """A batch with an equal share of rows drawn (with replacement) from each source."""
    share = max(1, batch_size // len(sources))
    return torch.cat([s[torch.randint(len(s), (share,), generator=gen)] for s in sources])


def sae_loss(sae: SAE, x: torch.Tensor,
             fired_ago: torch.Tensor | None = None) -> tuple[torch.Tensor, dict, torch.Tensor]:
    """(loss, its parts as floats, indices of latents that fired) of ``sae`` on prepared inputs ``x``.

    Reconstruction error is the squared L2 error per input (summed over dims, averaged over the batch).
    ``relu`` adds ``l1 * |z|_1``; the top-k kinds add the AuxK loss (Gao et al.) on latents that have not
    fired for ``cfg.dead_steps`` steps (``fired_ago`` counts steps since each latent last fired).
    ``matryoshka`` averages the error of every nested prefix of the dictionary. The top-k kinds decode
    from the kept latents only (a gather instead of a dense (batch, width) product).
    """
    cfg, n = sae.cfg, len(x)
    pre = sae.pre_activations(x)
    loss, err, x_hat, fired, l0 = cfg.entry.loss(sae, x, pre)
    parts = {"mse": err.item(), "l0": l0.item()}
    if cfg.entry.aux_loss and fired_ago is not None:
        dead = fired_ago >= cfg.dead_steps
        n_dead = int(dead.sum())
        if n_dead:
            aux_vals, aux_cols = (F.relu(pre) * dead).topk(min(n_dead, max(cfg.d // 2, 2 * cfg.k)), dim=1)
            aux_rows = torch.arange(n).repeat_interleave(aux_cols.shape[1])
            e_hat = sparse_decode(sae, n, aux_rows, aux_cols.flatten(), aux_vals.flatten())
            aux = ((x - x_hat).detach() - e_hat).pow(2).sum(-1).mean()
            loss = loss + cfg.aux_coef * aux
            parts["aux"] = aux.item()
    parts["loss"] = loss.item()
    return loss, parts, fired


def fit_sae(sae: SAE, sources: Sequence, steps: int = 2000, batch_size: int = 512, lr: float = 1e-3,
            seed: int = 0, log_every: int = 0, threads: int | None = None) -> SAE:
    """Train ``sae`` in place on one or more embedding arrays (e.g. image and text) and return it.

    Deterministic for a given ``seed`` on a given machine. The learning rate decays linearly to zero over
    the last 20% of the steps; dictionary rows are re-normalised to unit length after every step.
    ``threads`` sets torch's intra-op threads while training (restored after): 1 is much faster than
    several on a busy machine, where threads wait for each other at every small operation.
    """
    if threads is None:
        return _fit(sae, sources, steps, batch_size, lr, seed, log_every)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return _fit(sae, sources, steps, batch_size, lr, seed, log_every)
    finally:
        torch.set_num_threads(before)


def _fit(sae: SAE, sources: Sequence, steps: int, batch_size: int, lr: float, seed: int, log_every: int) -> SAE:
    if steps < 1 or batch_size < 1:
        raise SAEError(f"steps and batch_size must be positive (got {steps}, {batch_size})")
    data = [sae.prepare(s) for s in sources]
    if any(len(s) == 0 for s in data):
        raise SAEError("cannot train an SAE on an empty embedding array")
    gen = torch.Generator().manual_seed(seed)
    if not sae.train_info:  # a fresh SAE: start the decoder bias at the (balanced) data mean
        with torch.no_grad():
            sae.b_dec.copy_(torch.stack([s.mean(0) for s in data]).mean(0))
    try:  # the fused CPU kernel (torch >= 2.4) is ~5x faster than the default for-each Adam
        opt = torch.optim.Adam(sae.parameters(), lr=lr, fused=True)
    except (RuntimeError, TypeError):
        opt = torch.optim.Adam(sae.parameters(), lr=lr)
    decay_from = int(0.8 * steps)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: 1.0 if s < decay_from else max(0.0, (steps - s) / max(1, steps - decay_from)))
    fired_ago = torch.zeros(sae.width, dtype=torch.long)
    history: list[dict] = []
    sae.train()
    t0 = time.perf_counter()
    parts: dict = {}
    for step in range(1, steps + 1):
        x = _sample(data, batch_size, gen)
        loss, parts, fired = sae_loss(sae, x, fired_ago)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        with torch.no_grad():
            sae.W_dec.copy_(F.normalize(sae.W_dec, dim=-1))
            fired_ago += 1
            fired_ago[fired] = 0
        if log_every and (step % log_every == 0 or step == steps):
            history.append({"step": step, **{k: round(v, 6) for k, v in parts.items()}})
    # the kind's last step (e.g. calibrating a batch-top-k threshold on a sample of the training rows)
    sae.cfg.entry.finish(sae, lambda: _sample(data, min(CALIBRATION_ROWS, sum(len(s) for s in data)), gen))
    sae.eval()
    sae.train_info = {"steps": steps, "batch_size": batch_size, "lr": lr, "seed": seed,
                      "n_train": [len(s) for s in data], "seconds": round(time.perf_counter() - t0, 2),
                      "final": {k: round(v, 6) for k, v in parts.items()}, "history": history}
    return sae


def train_sae(kind: str, x, width: int, k: int | None = None, l1: float | None = None, steps: int = 2000,
              seed: int = 0, batch_size: int = 512, lr: float = 1e-3, normalize: bool = True,
              groups: list[int] | None = None, log_every: int = 0, threads: int | None = None) -> SAE:
    """Build and train an SAE of ``kind`` on ``x``: one (N, d) array, or a tuple/list of arrays
    (e.g. ``(image_emb, text_emb)``) that each get an equal share of every batch."""
    sources = list(x) if isinstance(x, (tuple, list)) else [x]
    if not sources:
        raise SAEError("train_sae needs at least one embedding array")
    d = int(torch.as_tensor(sources[0]).shape[-1])
    cfg = SAEConfig(kind=kind, d=d, width=width, k=k, l1=l1, normalize=normalize, groups=groups)
    return fit_sae(SAE(cfg, seed=seed), sources, steps=steps, batch_size=batch_size, lr=lr, seed=seed,
                   log_every=log_every, threads=threads)
