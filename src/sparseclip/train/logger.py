"""Run logging: JSON lines (one record per logged step) and optional TensorBoard."""

from __future__ import annotations

import json
from pathlib import Path

from ..files.atomic import json_safe, write_text_atomic
from ..model.rundir import RunDir


class RunLogger:
    """Appends records to ``log.jsonl`` and mirrors scalars to TensorBoard.

    On resume, records after the resume step are dropped first, so the log of a resumed run equals the
    log of an uninterrupted one.
    """

    def __init__(self, run_dir: Path, tensorboard: bool = True, resume_step: int | None = None):
        self.path = RunDir(run_dir).log
        if resume_step is not None and self.path.exists():
            # records up to the resume step; a line cut short by a killed process is dropped
            keep = [line for line, rec in _records(self.path) if rec.get("step", -1) <= resume_step]
            write_text_atomic(self.path, "".join(line + "\n" for line in keep))
        elif resume_step is None and self.path.exists():
            self.path.unlink()
        self.file = self.path.open("a")
        self.tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(RunDir(run_dir).tb))
            except ImportError:  # tensorboard is optional at run time
                self.tb = None

    def log(self, record: dict) -> None:
        self.file.write(json.dumps(json_safe(record), allow_nan=False) + "\n")  # strict JSON: NaN -> null
        self.file.flush()
        if self.tb is not None:
            for k, v in record.items():
                if k != "step" and isinstance(v, int | float):
                    self.tb.add_scalar(f"train/{k}", v, record["step"])

    def close(self) -> None:
        self.file.close()
        if self.tb is not None:
            self.tb.close()


def _records(path: Path) -> list[tuple[str, dict]]:
    """``(line, record)`` of a log file; a last line cut short (a killed writer) is skipped, a bad line
    elsewhere is an error naming the file and line."""
    lines = [ln for ln in path.read_text(encoding="utf-8", errors="replace").splitlines() if ln.strip()]
    out = []
    for i, line in enumerate(lines):
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            if i == len(lines) - 1:
                continue
            raise ValueError(f"{path}: line {i + 1} is not JSON") from None
        if isinstance(rec, dict):
            out.append((line, rec))
    return out


def read_log(run_dir: str | Path) -> list[dict]:
    """The records of a run's ``log.jsonl`` (a truncated last line skipped)."""
    return [rec for _, rec in _records(RunDir(run_dir).log)]
