"""The trainer's guard: non-finite values (``train.nonfinite=stop|skip_step``) and stop signals, agreed across ranks.

:class:`Guard` looks at each step once (its loss, its gradient norm, whether SIGINT / SIGTERM arrived: one
collective under torchrun), decides whether the update is applied, and at the end refuses final weights that a
skipped last step or non-finite codes make unusable.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from ..model.rundir import RunDir


class Diverged(ValueError):
    """A non-finite loss, gradient or weight under ``train.nonfinite=stop`` (one line)."""


class Interrupted(KeyboardInterrupt):
    """The run stopped at a step boundary on a signal, with a checkpoint saved (``step``: its step)."""

    def __init__(self, message: str, step: int | None = None):
        super().__init__(message)
        self.step = step


class StopRequest:
    """SIGINT / SIGTERM set a flag; the loop finishes the step it is in, saves a checkpoint and stops. A second
    signal stops at once (the run then continues from its previous checkpoint)."""

    def __init__(self) -> None:
        self.requested = False
        self._old: dict = {}

    def _handle(self, signum, frame) -> None:
        import signal

        if self.requested:
            for sig, old in self._old.items():
                signal.signal(sig, old)
            raise KeyboardInterrupt
        self.requested = True
        print(f"\n[train] {signal.Signals(signum).name}: stopping after this step with a checkpoint "
              "(again to stop at once)", flush=True)

    def __enter__(self) -> StopRequest:
        import signal
        import threading

        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        import signal

        for sig, old in self._old.items():
            signal.signal(sig, old)
        self._old = {}


class Guard:
    """One step's verdict: :meth:`check` says whether the update is applied (a non-finite loss or gradient
    stops the run, :class:`Diverged`, or skips the step under ``skip_step``); :attr:`stopping` says whether a
    signal asked every rank to stop after this step. It counts the skipped steps and remembers the last step
    whose starting weights gave a finite loss (which checkpoint to name when the run fails)."""

    def __init__(self, policy: str, run_dir: Path, stop: StopRequest, start: int) -> None:
        self.policy, self.run_dir, self.stop, self.start = policy, run_dir, stop, start
        self.bad = ""  # what was non-finite at the last checked step ("loss", "gradient" or "")
        self.stopping = False
        self.skipped = 0
        self.finite_at: int | None = None  # the weights after this many steps gave a finite loss

    def check(self, step: int, loss: dict, grad_norm: torch.Tensor | None) -> bool:
        """Whether step ``step`` (0-based) may update the weights; ``grad_norm`` None skips its check (fp16:
        the scaler skips inf gradients itself)."""
        self.bad, self.stopping = _step_flags(loss, grad_norm, self.stop.requested)
        if not self.bad:
            self.finite_at = step
            return True
        if self.policy == "stop":
            last = RunDir(self.run_dir).latest()
            raise Diverged(f"non-finite {self.bad} at step {step + 1}: stopped (train.nonfinite=stop); "
                           + (f"the newest checkpoint, {last.name}, holds the last finite weights"
                              if last else "no checkpoint was written") +
                           "; try a lower train.lr or train.nonfinite=skip_step")
        self.skipped += 1
        return False

    def check_end(self, done: int, codes_ok) -> None:
        """At the last step: refuse final weights that a skipped last step or non-finite codes make unusable
        (:class:`Diverged`); ``codes_ok()`` runs only when the last step was applied."""
        _check_end(self.run_dir, self.bad, self.skipped, done - self.start, self.finite_at,
                   codes_ok=not self.bad and codes_ok())

    def interrupt(self, done: int, steps: int) -> None:
        """Stop after step ``done`` (its checkpoint written) when a signal asked for it (:class:`Interrupted`)."""
        if self.stopping and done < steps:
            raise Interrupted(f"interrupted: stopped after step {done} with a checkpoint; continue exactly "
                              f"with: sparseclip train ... --out {self.run_dir} --resume latest", step=done)


def check_weights(model, when: str) -> None:
    """Refuse to save non-finite weights (:class:`Diverged`; ``when`` completes the message)."""
    if not all(bool(torch.isfinite(p).all()) for p in model.parameters()):
        raise Diverged(f"non-finite weights {when}; try a lower train.lr")


def _step_flags(loss: dict, grad_norm: torch.Tensor | None, stop_requested: bool) -> tuple[str, bool]:
    """``(what is non-finite this step on any rank: "loss", "gradient" or "", whether any rank was asked to
    stop)``, agreed across ranks in one collective."""
    total = sum(float(v) for v in loss.values())
    flags = _any_rank([not math.isfinite(total), grad_norm is not None and not bool(torch.isfinite(grad_norm)),
                       stop_requested])
    return ("loss" if flags[0] else "gradient" if flags[1] else ""), flags[2]


def _any_rank(flags: list[bool]) -> list[bool]:
    """Each flag, set when any rank set it (one collective under torchrun; as given otherwise)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        t = torch.tensor([float(f) for f in flags], dtype=torch.float64)
        if torch.distributed.get_backend() == "nccl":
            t = t.cuda()
        torch.distributed.all_reduce(t)  # a sum: > 0 when any rank set the flag
        return [bool(v > 0) for v in t.tolist()]
    return [bool(f) for f in flags]


@torch.no_grad()
def codes_finite(model, step_model, batch: tuple, amp) -> bool:
    """Whether the model (in eval mode, as ``sparseclip eval`` runs it) gives finite codes for ``batch`` on
    every rank."""
    model.eval()
    with amp():
        out = step_model(*batch)
    ok = all(bool(torch.isfinite(out[k]).all()) for k in ("image_code", "text_code") if k in out)
    return not _any_rank([not ok])[0]


def _check_end(run_dir: Path, bad: str, skipped: int, steps_run: int, finite_at: int | None,
               codes_ok: bool) -> None:
    """Refuse final weights that a skipped last step or non-finite codes make unusable (:class:`Diverged`)."""
    counted = f"{skipped} of the {steps_run} steps run were skipped (train.nonfinite=skip_step)"
    if bad:
        why = f"non-finite {bad} at the last step: {counted}"
    elif not codes_ok:
        why = "the final weights give non-finite codes" + (f" ({counted})" if skipped else "")
    else:
        return
    raise Diverged(f"{why}; final/ not written; {_newest_finite_checkpoint(run_dir, finite_at)}; "
                   "try a lower train.lr")


def _newest_finite_checkpoint(run_dir: Path, finite_at: int | None) -> str:
    """The newest checkpoint whose weights gave a finite loss (those after ``finite_at`` steps did), in words."""
    ok = [d for s, d in RunDir(run_dir).checkpoints() if finite_at is not None and s <= finite_at]
    return (f"the newest checkpoint whose weights gave a finite loss is {ok[-1]}" if ok
            else "no checkpoint with weights known to give a finite loss was written")
