"""Sparsify pretrained towers, offline, on a CPU: wide ReLU heads vs dense heads on frozen real towers.

A thin use of the library's own route: the towers are ``model.towers=lite`` (EfficientNet-Lite0 + all-MiniLM-L6-v2,
resolved by sparseclip from their pip wheels), the config extends the ``lite_sparse`` preset with the emoji CSV
(``emoji.yaml``), and ``sparseclip.train`` trains the heads on cached tower features. The same from the shell::

    sparseclip import-emoji data/emoji --format csv
    sparseclip train examples/pretrained_emoji/emoji.yaml data.train_data=data/emoji/train.csv --out runs/emoji/relu

Data: the Noto colour emoji (Debian ``fonts-noto-color-emoji``) captioned with their Unicode names. This script
adds what is emoji-specific: zero-shot over the emoji groups on the held-out test emoji, and a table::

    python examples/pretrained_emoji/sparsify_emoji.py --out runs/emoji
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

HERE = Path(__file__).resolve().parent
TEMPLATES = ["an emoji of a {}.", "a {} emoji.", "{}"]


def read_split(path: Path) -> list[dict]:
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def evaluate(model, tokenizer, cache_test, test_rows: list[dict]) -> dict:
    """Retrieval (test emoji, view 0) and zero-shot over the groups, from cached tower features."""
    from sparseclip.eval.retrieval import retrieval_metrics
    from sparseclip.eval.sparsity import sparsity_stats
    from sparseclip.eval.zeroshot import zero_shot_eval
    from sparseclip.features_cache import head_codes, text_tower_features

    with torch.no_grad():
        img, txt = head_codes(model, cache_test.image, cache_test.text)
        rows = [test_rows[i] for i in cache_test.meta["rows"]]
        out = {k: v for k, v in retrieval_metrics(img, txt, list(range(len(rows))), ks=(1, 5)).items()}
        groups = sorted({r["group"] for r in rows if r["group"]})
        idx = [i for i, r in enumerate(rows) if r["group"]]
        out["zeroshot_classes"], out["zeroshot_images"] = len(groups), len(idx)
        if len(groups) >= 2:
            weights = []
            for g in groups:
                prompts = [t.format(g) for t in TEMPLATES]
                _, t = head_codes(model, None, text_tower_features(model, tokenizer, prompts))
                weights.append(F.normalize(F.normalize(t, dim=-1).mean(0), dim=0))
            targets = [groups.index(rows[i]["group"]) for i in idx]
            zs = zero_shot_eval(img[idx], torch.stack(weights, 1), targets)
            out |= {f"zeroshot_{k}": v for k, v in zs.items()}
        si, st = sparsity_stats(img), sparsity_stats(txt)
        out |= {"code_dim": si["dim"], "L0_image": si["L0"], "L0_text": st["L0"],
                "active_pct_image": si["active_pct"], "active_pct_text": st["active_pct"]}
    return out


def run(out: Path, limit: int = 0, size: int = 128, views: int = 2, steps: int = 300, batch_size: int = 256,
        heads: tuple[str, ...] = ("dense", "relu"), overrides: list[str] = (), log=print) -> dict:
    """The whole example; returns {head: metrics}. Each head's run is ``OUT/<head>/`` (a normal run folder)."""
    from sparseclip.checkpoint import load_model
    from sparseclip.config import load_config
    from sparseclip.data.emoji import import_emoji
    from sparseclip.features_cache import cache_pairs
    from sparseclip.model import get_tokenizer, image_transform
    from sparseclip.train import train

    data = out / "data"
    if not (data / "train.csv").is_file():
        log(f"importing emoji -> {data}")
        log(json.dumps(import_emoji(data, "csv", size=size, views=views, limit=limit)))
    test_rows = read_split(data / "test.csv")
    results = {}
    for head in heads:
        cfg = load_config(str(HERE / "emoji.yaml"), [
            f"model.head.kind={head}", f"name=emoji_{head}", f"data.train_data={data / 'train.csv'}",
            f"train.steps={steps}", f"train.batch_size={batch_size}", f"model.vision_cfg.image_size={size}",
            f"data.image_size={size}", f"train.output_dir={out / head}", "train.progress=false", *overrides])
        train(cfg)
        model, cfg = load_model(out / head)
        tokenizer = get_tokenizer(cfg.model, cfg.data.context_length)
        cache = cache_pairs(model, tokenizer, image_transform(size, cfg=cfg.model),
                            [str(data / r["filepath"]) for r in test_rows], [r["title"] for r in test_rows],
                            path=out / "features_test.safetensors")
        metrics = evaluate(model, tokenizer, cache, test_rows)
        log_rows = [json.loads(x) for x in (out / head / "log.jsonl").read_text().splitlines() if x.strip()]
        metrics["train_seconds"] = round(sum(cfg.train.log_every * cfg.train.batch_size / r["samples_per_s"]
                                             for r in log_rows), 1)
        metrics["train_pairs"] = json.loads((out / head / "data_stats.json").read_text())["cached_pairs"]
        results[head] = metrics
    (out / "results.json").write_text(json.dumps(results, indent=2))
    (out / "results.md").write_text(results_table(results))
    return results


COLUMNS = (("code dim", "code_dim", "{:.0f}"), ("img->txt R@1", "image_to_text_R@1", "{:.1%}"),
           ("img->txt R@5", "image_to_text_R@5", "{:.1%}"), ("txt->img R@1", "text_to_image_R@1", "{:.1%}"),
           ("txt->img R@5", "text_to_image_R@5", "{:.1%}"), ("zero-shot acc1", "zeroshot_acc1", "{:.1%}"),
           ("zero-shot mean recall", "zeroshot_mean_per_class_recall", "{:.1%}"),
           ("L0 image", "L0_image", "{:.0f}"), ("L0 text", "L0_text", "{:.0f}"),
           ("active % image", "active_pct_image", "{:.1f}"), ("head train s", "train_seconds", "{:.0f}"))


def results_table(results: dict) -> str:
    """A markdown table: one row per head."""
    lines = ["| head | " + " | ".join(c[0] for c in COLUMNS) + " |",
             "|---" * (len(COLUMNS) + 1) + "|"]
    for head, m in results.items():
        cells = [fmt.format(m[key]) if key in m else "n/a" for _, key, fmt in COLUMNS]
        lines.append(f"| {head} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("runs/emoji"))
    p.add_argument("--limit", type=int, default=0, help="about this many emoji (0: all ~1,360)")
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--views", type=int, default=2)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--heads", default="dense,relu")
    p.add_argument("overrides", nargs="*", help="config overrides key=value (e.g. model.head.expansion=16)")
    a = p.parse_args(argv)
    try:
        results = run(a.out, a.limit, a.size, a.views, a.steps, a.batch_size, tuple(a.heads.split(",")),
                      a.overrides)
    except ValueError as e:
        print(f"sparsify_emoji: {e}", file=sys.stderr)
        return 2
    print(results_table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
