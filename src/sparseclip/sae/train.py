"""Training SAEs: one deterministic loop for every variant (Adam, balanced image/text batches), for a fixed number
of steps or until the unexplained variance on a held-out slice stops falling (:class:`StopRule`)."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

from .kinds import sparse_decode
from .model import SAE, SAEConfig, SAEError

#: rows used to calibrate the inference threshold of the batch-top-k variants
CALIBRATION_ROWS = 4096
#: the share of the steps over which the learning rate decays linearly to zero at the end of training
DECAY_SHARE = 0.2


@dataclass(frozen=True)
class StopRule:
    """Train until the held-out FVU stops improving: every ``eval_every`` steps the unexplained variance of the
    held-out slice is measured (the codes training itself uses: batch-top-k over the slice); training is *flat*
    when the best FVU of the last ``window`` evaluations is less than ``tol`` (relative) below the best before
    them, or less than ``abs_tol`` (FVU points: a share of the variance) below it. Then the learning rate decays
    linearly to zero over a further quarter of the steps run (so the decay is :data:`DECAY_SHARE` of the total)
    and training ends. ``steps`` of :func:`fit_sae` is the cap: if training is not flat by the start of the cap's
    own decay (80% of it), it runs to the cap and is recorded as not converged.

    Why an absolute floor too: an SAE's FVU falls roughly as a power of the steps, whose relative gain per window
    shrinks only slowly (on the world's dense embeddings, 8192 wide at k = 73: from 0.0067 at step 1000 to 0.0035
    at step 3200, still 2-3% per 300 steps); a gain of a tenth of a percent of the variance per window is not
    worth the compute and moves no metric the SAEs are compared on."""

    eval_every: int = 100
    window: int = 3
    tol: float = 0.01
    abs_tol: float = 1e-3

    def __post_init__(self) -> None:
        if self.eval_every < 1 or self.window < 1 or not self.tol >= 0 or not self.abs_tol >= 0:
            raise SAEError(f"a stop rule needs eval_every >= 1, window >= 1 and tolerances >= 0, got {self}")

    def flat(self, curve: Sequence[float]) -> bool:
        """Whether the FVU ``curve`` (one value per evaluation) has stopped improving."""
        if len(curve) <= self.window:
            return False
        before, recent = min(curve[:-self.window]), min(curve[-self.window:])
        return (before - recent) < max(self.tol * before, self.abs_tol)


def split_held_out(sources: Sequence, share: float = 0.1, max_rows: int = 1024) -> tuple[list, list]:
    """``(train, held_out)``: the last ``share`` of each source's rows (at least 1, at most ``max_rows``) held out
    for :class:`StopRule`, the rest for training (a source of one row is kept whole and held out too)."""
    train, held = [], []
    for s in sources:
        n = len(s)
        h = min(max(1, int(share * n)), max_rows, max(n - 1, 1))
        train.append(s[:n - h] if n > 1 else s)
        held.append(s[n - h:])
    return train, held


@torch.no_grad()
def held_out_fvu(sae: SAE, held: list[torch.Tensor]) -> float:
    """Mean over the (prepared) held-out sources of their FVU, with the codes of training (batch mode)."""
    from .metrics import fvu

    vals = [fvu(x, sae.decode(sae.activate(sae.pre_activations(x), batch_mode=True))) for x in held]
    return float(sum(vals) / len(vals))


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
            seed: int = 0, log_every: int = 0, threads: int | None = None, held_out: Sequence | None = None,
            stop: StopRule | None = None) -> SAE:
    """Train ``sae`` in place on one or more embedding arrays (e.g. image and text) and return it.

    Deterministic for a given ``seed`` on a given machine. Without ``held_out``: ``steps`` steps, the learning
    rate decaying linearly to zero over the last 20%. With ``held_out`` (arrays like ``sources``, not trained on):
    ``steps`` is a cap and training stops when the held-out FVU is flat (``stop``, default :class:`StopRule`);
    ``train_info`` then records ``converged``, ``fvu_held_out`` (after training) and ``curve`` (``[step, FVU]`` per
    evaluation). Dictionary rows are re-normalised to unit length after every step. ``threads`` sets torch's
    intra-op threads while training (restored after): 1 is much faster than several on a busy machine, where
    threads wait for each other at every small operation.
    """
    if threads is None:
        return _fit(sae, sources, steps, batch_size, lr, seed, log_every, held_out, stop)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return _fit(sae, sources, steps, batch_size, lr, seed, log_every, held_out, stop)
    finally:
        torch.set_num_threads(before)


def _fit(sae: SAE, sources: Sequence, steps: int, batch_size: int, lr: float, seed: int, log_every: int,
         held_out: Sequence | None, stop: StopRule | None) -> SAE:
    if steps < 1 or batch_size < 1:
        raise SAEError(f"steps and batch_size must be positive (got {steps}, {batch_size})")
    data = [sae.prepare(s) for s in sources]
    if any(len(s) == 0 for s in data):
        raise SAEError("cannot train an SAE on an empty embedding array")
    held = [sae.prepare(s) for s in held_out] if held_out is not None else None
    if held is not None and (not held or any(len(s) == 0 for s in held)):
        raise SAEError("the held-out slice of an SAE needs rows from every source")
    stop = (stop or StopRule()) if held is not None else None
    gen = torch.Generator().manual_seed(seed)
    if not sae.train_info:  # a fresh SAE: start the decoder bias at the (balanced) data mean
        with torch.no_grad():
            sae.b_dec.copy_(torch.stack([s.mean(0) for s in data]).mean(0))
    try:  # the fused CPU kernel (torch >= 2.4) is ~5x faster than the default for-each Adam
        opt = torch.optim.Adam(sae.parameters(), lr=lr, fused=True)
    except (RuntimeError, TypeError):
        opt = torch.optim.Adam(sae.parameters(), lr=lr)
    # the decay runs from `start` to `end`; a stop rule that finds the curve flat moves both earlier
    span = {"start": int((1 - DECAY_SHARE) * steps), "end": steps}
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0 if s < span["start"] else max(
        0.0, (span["end"] - s) / max(1, span["end"] - span["start"])))
    fired_ago = torch.zeros(sae.width, dtype=torch.long)
    history: list[dict] = []
    curve: list[list[float]] = []
    converged = False
    sae.train()
    t0 = time.perf_counter()
    parts: dict = {}
    step = 0
    while step < span["end"]:
        step += 1
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
        if log_every and (step % log_every == 0 or step == span["end"]):
            history.append({"step": step, **{k: round(v, 6) for k, v in parts.items()}})
        if stop is not None and not converged and step % stop.eval_every == 0 and step <= span["start"]:
            curve.append([step, round(held_out_fvu(sae, held), 6)])
            if stop.flat([c[1] for c in curve]):
                converged = True
                span["start"] = step
                span["end"] = min(steps, step + math.ceil(step * DECAY_SHARE / (1 - DECAY_SHARE)))
    # the kind's last step (e.g. calibrating a batch-top-k threshold on a sample of the training rows)
    sae.cfg.entry.finish(sae, lambda: _sample(data, min(CALIBRATION_ROWS, sum(len(s) for s in data)), gen))
    sae.eval()
    sae.train_info = {"steps": step, "batch_size": batch_size, "lr": lr, "seed": seed,
                      "n_train": [len(s) for s in data], "seconds": round(time.perf_counter() - t0, 2),
                      "final": {k: round(v, 6) for k, v in parts.items()}, "history": history}
    if stop is not None:
        from .metrics import fvu

        with torch.no_grad():
            final = sum(fvu(x, sae.decode(sae.encode(x))) for x in held) / len(held)
        sae.train_info |= {"max_steps": steps, "converged": converged, "stop": asdict(stop),
                           "n_held_out": [len(s) for s in held], "fvu_held_out": round(float(final), 6),
                           "curve": curve}
    return sae


def train_sae(kind: str, x, width: int, k: int | None = None, l1: float | None = None, steps: int = 2000,
              seed: int = 0, batch_size: int = 512, lr: float = 1e-3, normalize: bool = True,
              groups: list[int] | None = None, log_every: int = 0, threads: int | None = None,
              held_out=None, stop: StopRule | None = None) -> SAE:
    """Build and train an SAE of ``kind`` on ``x``: one (N, d) array, or a tuple/list of arrays
    (e.g. ``(image_emb, text_emb)``) that each get an equal share of every batch. ``held_out`` (arrays like ``x``):
    train until their FVU is flat, ``steps`` being the cap (:func:`fit_sae`)."""
    sources = list(x) if isinstance(x, (tuple, list)) else [x]
    if not sources:
        raise SAEError("train_sae needs at least one embedding array")
    if held_out is not None and not isinstance(held_out, (tuple, list)):
        held_out = [held_out]
    d = int(torch.as_tensor(sources[0]).shape[-1])
    cfg = SAEConfig(kind=kind, d=d, width=width, k=k, l1=l1, normalize=normalize, groups=groups)
    return fit_sae(SAE(cfg, seed=seed), sources, steps=steps, batch_size=batch_size, lr=lr, seed=seed,
                   log_every=log_every, threads=threads, held_out=held_out, stop=stop)
