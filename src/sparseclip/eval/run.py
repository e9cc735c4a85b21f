"""The one evaluation entry point: load a run or checkpoint, evaluate it (the procedural world or the user's
data), and write ``eval.json`` atomically. ``sparseclip eval``, the demo and the ablations all call it."""

from __future__ import annotations

from pathlib import Path

from ..files.atomic import write_json_atomic


def evaluate_run(target: str | Path, out: str | Path | None = None, *, data: str | Path | None = None,
                 label_key: str = "", templates: list[str] | None = None, probe: bool = True,
                 progress: bool = True, img_key: str | None = None, caption_key: str | None = None,
                 extra: dict | None = None, model: tuple | None = None) -> dict:
    """Evaluate the model at ``target`` (run or checkpoint dir) and return the result; with ``out``, also write
    it there atomically.

    Without ``data``: :func:`sparseclip.eval.evaluate` on the procedural world's validation sets. With ``data``
    (a CSV, an image folder or CLIP_benchmark's layout): :func:`sparseclip.eval.dataset.evaluate_data`.
    ``extra`` entries (e.g. ``train_seconds``) are added to the result. ``model``: the ``(model, config)`` of
    ``target`` when the caller has it loaded already.
    """
    from ..model.checkpoint import load_model
    from . import evaluate
    from .dataset import evaluate_data

    model, cfg = model if model is not None else load_model(target)
    result = {"checkpoint": str(target), "model": cfg.name, "head": cfg.model.head.kind}
    if data is None:
        result |= evaluate(model, cfg, progress=progress, probe=probe)
    else:
        result |= evaluate_data(model, cfg, data, label_key=label_key, templates=templates, probe=probe,
                                img_key=img_key, caption_key=caption_key)
    result |= extra or {}
    if out is not None:
        write_json_atomic(out, result)
    return result
