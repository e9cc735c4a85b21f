"""The one evaluation entry point: load a run or checkpoint, evaluate it (the procedural world or the user's
data), and write ``eval.json`` atomically. ``sparseclip eval``, the demo and the ablations all call it."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from ..files.atomic import write_json_atomic


def evaluate_run(target: str | Path, out: str | Path | None = None, *, data: str | Path | None = None,
                 label_key: str = "", templates: list[str] | None = None, probe: bool = True,
                 progress: bool = True, img_key: str | None = None, caption_key: str | None = None,
                 extra: dict | None = None, model: tuple | None = None,
                 note: Callable[[str], None] | None = None) -> dict:
    """Evaluate the model at ``target`` (run or checkpoint dir) and return the result; with ``out``, also write
    it there atomically.

    Without ``data``: :func:`sparseclip.eval.evaluate` on the procedural world's validation sets. With ``data``
    (a CSV, an image folder or CLIP_benchmark's layout): :func:`sparseclip.eval.dataset.evaluate_data`.
    ``extra`` entries (e.g. ``train_seconds``) are added to the result. ``model``: the ``(model, config)`` of
    ``target`` when the caller has it loaded already. The checkpoint dir evaluated is recorded as
    ``checkpoint_dir``; a run without ``final/`` is evaluated at its newest step checkpoint, and ``note`` (e.g. a
    print to stderr) is told so before the work starts. ``dictionary`` holds the dictionary's health on the
    run's training inputs (:func:`sparseclip.eval.health.training_health`), or why it could not be counted.
    """
    from ..data.sources import DATA_FORMATS
    from ..model.checkpoint import load_model, resolve_checkpoint
    from ..model.rundir import CONFIG, RunDir
    from ..weights import shipped_spec
    from . import evaluate
    from .dataset import evaluate_data

    result: dict = {"checkpoint": str(target)}
    if model is None:
        ckpt = resolve_checkpoint(target)
        shipped = shipped_spec(ckpt) is not None
        if note is not None and not shipped and ckpt not in (Path(target), RunDir(target).final):
            note(f"{target} has no final/ (training did not finish): evaluating its newest checkpoint, {ckpt}")
        kind = json.loads((ckpt / CONFIG).read_text()).get("data", {}).get("kind", "world") if shipped else "world"
        if data is None and DATA_FORMATS.get(kind).needs_path:  # refused before the model is loaded
            raise ValueError(f"{target} was trained on a {kind} image-caption set, not on the procedural world: "
                             "pass --data with that kind of set (docs/pretrained.md says which)")
        result["checkpoint_dir"] = str(ckpt)
        model = load_model(ckpt)
    model, cfg = model
    result |= {"model": cfg.name, "head": cfg.model.head.kind}
    if data is None:
        result |= evaluate(model, cfg, progress=progress, probe=probe)
    else:
        result |= evaluate_data(model, cfg, data, label_key=label_key, templates=templates, probe=probe,
                                img_key=img_key, caption_key=caption_key)
    result["dictionary"] = _health(model, cfg, target, note)
    result |= extra or {}
    if out is not None:
        write_json_atomic(out, result)
    return result


def _health(model, cfg, target: str | Path, note: Callable[[str], None] | None) -> dict:
    """The dictionary's health on the training inputs, or ``{"error": ...}`` when they cannot be read (a
    training CSV moved away since): the evaluation itself does not depend on them."""
    from ..data.base import DataError
    from ..model.rundir import RunDir
    from ..weights import recorded_health
    from .health import training_health

    recorded = recorded_health(target)  # a shipped model: its training inputs are not in the package
    if recorded is not None:
        return recorded
    try:
        run = RunDir.of(target)  # a run folder keeps the feature cache; a bare checkpoint dir is not written to
        return training_health(model, cfg, run.path if run.log.is_file() else None)
    except (DataError, OSError, ValueError) as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        if note is not None:
            note(f"the dictionary's health on the training inputs was not counted: {msg}")
        return {"error": msg}
