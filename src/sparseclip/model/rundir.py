"""The run folder: the one place that knows what ``sparseclip train`` writes where.

::

    RUN/
      config.json            the run's full config
      log.jsonl              one JSON record per logged step
      data_stats.json        samples seen / skipped by reason
      eval.json              the evaluation (``sparseclip eval``, ``train --eval``, demo, ablate)
      features.safetensors   cached frozen-tower features (reused while towers and data are the same)
      final/                 the trained model: a checkpoint dir
      checkpoints/step_XXXXXX/   checkpoint dirs taken during training (+ trainer_state.pt to resume)
      tb/                    TensorBoard events
      plots/training.png     loss, L0 and features unfired over training (written when training ends)
      analysis/              ``sparseclip analyze`` output
      .lock                  held while a process writes the run

A *checkpoint dir* holds ``model.safetensors`` and ``config.json``.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

WEIGHTS = "model.safetensors"
CONFIG = "config.json"
LOG, DATA_STATS, EVAL = "log.jsonl", "data_stats.json", "eval.json"
#: the files ``sparseclip analyze`` writes into an analysis folder (a run's ``analysis/``, or ``--out``); the
#: report, the index and the demo read them by these names
SUMMARY_JSON, FEATURES_JSON, FEATURE_NAMES_JSON = "summary.json", "features.json", "feature_names.json"
#: what ``sparseclip demo`` writes next to its runs (read by the report)
RESULTS_JSON, RESULTS_MD = "results.json", "results.md"
_STEP = re.compile(r"^step_(\d+)$")


class RunDir:
    """A run folder (see the module docstring); paths are computed, nothing is created."""

    #: what a run folder holds that a new run without --resume would replace (the feature cache is kept: it is
    #: keyed by its content and reused)
    RUN_FILES = (CONFIG, LOG, DATA_STATS, EVAL, "final", "checkpoints", "tb", "plots")

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    @classmethod
    def of(cls, target: str | Path) -> RunDir:
        """The run a run folder, its ``final/`` or one of its ``checkpoints/step_*`` belongs to (a bare
        checkpoint dir elsewhere is its own run folder)."""
        p = Path(target)
        if p.name == "final" or (p.parent.name == "checkpoints" and _STEP.match(p.name)):
            return cls(p.parent if p.name == "final" else p.parent.parent)
        return cls(p)

    # -- files --------------------------------------------------------------------------------------------
    @property
    def config(self) -> Path:
        return self.path / CONFIG

    @property
    def log(self) -> Path:
        return self.path / LOG

    @property
    def data_stats(self) -> Path:
        return self.path / DATA_STATS

    @property
    def eval_json(self) -> Path:
        return self.path / EVAL

    @property
    def features(self) -> Path:
        return self.path / "features.safetensors"

    @property
    def final(self) -> Path:
        return self.path / "final"

    @property
    def tb(self) -> Path:
        return self.path / "tb"

    @property
    def plots(self) -> Path:
        return self.path / "plots"

    @property
    def analysis(self) -> Path:
        return self.path / "analysis"

    @property
    def checkpoints_dir(self) -> Path:
        return self.path / "checkpoints"

    # -- checkpoints --------------------------------------------------------------------------------------
    def step(self, step: int) -> Path:
        """The checkpoint dir of step ``step``."""
        return self.checkpoints_dir / f"step_{step:06d}"

    def step_dirs(self) -> list[tuple[int, Path]]:
        """``(step, dir)`` of every ``checkpoints/step_N`` folder (complete or not), oldest first."""
        if not self.checkpoints_dir.is_dir():
            return []
        found = ((_STEP.match(d.name), d) for d in self.checkpoints_dir.iterdir() if d.is_dir())
        return sorted((int(m.group(1)), d) for m, d in found if m)

    def checkpoints(self) -> list[tuple[int, Path]]:
        """``(step, dir)`` of the step checkpoints that hold weights, oldest first."""
        return [(s, d) for s, d in self.step_dirs() if (d / WEIGHTS).is_file()]

    def latest(self) -> Path | None:
        """The newest step checkpoint with weights, or None."""
        ckpts = self.checkpoints()
        return ckpts[-1][1] if ckpts else None

    def has_final(self) -> bool:
        return (self.final / WEIGHTS).is_file()

    def model_dir(self) -> Path | None:
        """The checkpoint dir that stands for the run: ``final/``, else the newest step checkpoint."""
        return self.final if self.has_final() else self.latest()

    # -- the folder as a whole ------------------------------------------------------------------------------
    def run_files(self) -> list[str]:
        """The names of :attr:`RUN_FILES` present (an empty list: no run here)."""
        return [n for n in self.RUN_FILES if (self.path / n).exists()]

    def clear(self) -> None:
        """Remove :attr:`RUN_FILES` (``--overwrite``)."""
        for n in self.run_files():
            target = self.path / n
            shutil.rmtree(target) if target.is_dir() else target.unlink()
