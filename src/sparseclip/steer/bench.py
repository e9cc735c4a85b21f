"""The steering benchmark (the paper's ImageNet protocol, on the procedural world).

For each one-object validation image: suppress its true concept (its colour, or its shape) and boost another
one (chosen deterministically), ask the VLM, and score the answer (:mod:`.scoring`). Sweep K (features per
concept) x strength (relative to each feature's reference percentile) for a Sparse CLIP; sweep the strength of
the comparable dense edit (add the scaled difference of the target's and source's text embeddings) for a
dense CLIP. Zero-shot classification of the edited codes (no LM) is reported alongside. The setting is chosen
on a *select* split (highest success with corruption <= the budget) and reported on a disjoint *test* split.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from ..data.tasks import TASK_SPECS, hash_seed
from ..data.world import COLORS, SHAPES, World
from ..embed import encode_images
from ..fileio import save_figure, write_text_atomic
from .interventions import (
    FeatureReference,
    Intervention,
    apply_intervention,
    class_embeddings,
    concept_features_checked,
    dense_shift,
    steered_zero_shot,
    text_direction,
)
from .scoring import names, score
from .text import QUESTIONS
from .vlm import AdapterVLM

VALUES = {"color": list(COLORS), "shape": list(SHAPES)}
ATTRIBUTE_QUESTION = {"color": QUESTIONS["color"], "shape": QUESTIONS["shape"]}


@dataclass
class BenchConfig:
    """What the sweep covers."""

    n_images: int = 100  # per split and concept kind
    ks: tuple[int, ...] = (1, 2, 4, 8)
    strengths: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0, 8.0)  # x the feature's reference percentile
    dense_strengths: tuple[float, ...] = (0.25, 0.5, 1.0, 2.0, 4.0)  # x the mean image-code norm
    kinds: tuple[str, ...] = ("color", "shape")
    percentile: float = 99.0
    n_reference: int = 1000
    max_corruption: float = 0.05
    max_new_tokens: int = 40
    seed: int = 1


@dataclass
class Item:
    index: int
    kind: str
    source: str
    target: str


def split_items(kind: str, split: str, n: int, seed: int, image_size: int):
    """``n`` one-object scenes of a split with (source = true value, target = another value), and images."""
    world = World(seed=hash_seed(seed, f"steer-{split}-{kind}"), image_size=image_size, max_objects=1)
    values = VALUES[kind]
    items, images = [], []
    for i in range(n):
        scene = world.scene(i)
        src = getattr(scene.objects[0], kind)
        j = values.index(src)
        tgt = values[(j + 1 + i % (len(values) - 1)) % len(values)]
        items.append(Item(i, kind, src, tgt))
        images.append(world.render(scene, i))
    return items, images


def _score_rows(answers: list[str], question: str, items: list[Item]) -> dict[str, float]:
    s = [score(a, question, it.source, it.target) | {"names_source": names(a, it.source)}
         for a, it in zip(answers, items, strict=True)]
    n = max(1, len(s))
    return {k: sum(r[k] for r in s) / n for k in ("success", "corrupt", "clean_success", "names_source")}


class _Split:
    """A split's images and codes, grouped by concept kind."""

    def __init__(self, model, tokenizer, image_size: int, name: str, cfg: BenchConfig):
        self.name = name
        self.items: dict[str, list[Item]] = {}
        self.codes: dict[str, torch.Tensor] = {}
        self.weights = {k: class_embeddings(model, tokenizer, *TASK_SPECS[k]) for k in cfg.kinds}
        for kind in cfg.kinds:
            items, images = split_items(kind, name, cfg.n_images, cfg.seed, image_size)
            self.items[kind] = items
            self.codes[kind] = encode_images(model, images, image_size)


def _evaluate(vlm: AdapterVLM, model, tokenizer, split: _Split, edit: Callable[[torch.Tensor, Item], torch.Tensor],
              max_new_tokens: int = 40) -> dict:
    """Answers to both questions for every item after ``edit``; the scores, per kind and overall."""
    out: dict = {}
    totals: dict[str, dict[str, float]] = {}
    for kind, items in split.items.items():
        codes = torch.stack([edit(split.codes[kind][i], it) for i, it in enumerate(items)])
        res = {}
        for qname, question in (("caption", QUESTIONS["caption"]), ("attribute", ATTRIBUTE_QUESTION[kind])):
            res[qname] = _score_rows(vlm.generate(codes, question, max_new_tokens), question, items)
        classnames, templates = TASK_SPECS[kind]
        pred = steered_zero_shot(model, tokenizer, codes, classnames, templates, weights=split.weights[kind])
        res["zeroshot_target"] = sum(classnames[p] == it.target for p, it in zip(pred.tolist(), items,
                                                                                  strict=True)) / len(items)
        out[kind] = res
        for key, val in res.items():
            if isinstance(val, dict):
                for m, v in val.items():
                    totals.setdefault(key, {}).setdefault(m, 0.0)
                    totals[key][m] += v / len(split.items)
            else:
                totals.setdefault("zeroshot_target", {}).setdefault("rate", 0.0)
                totals["zeroshot_target"]["rate"] += val / len(split.items)
    out["all"] = totals
    return out


def run_benchmark(vlm: AdapterVLM, model, tokenizer, image_size: int, cfg: BenchConfig, method: str,
                  reference_codes: torch.Tensor, log: Callable[[str], None] | None = None) -> dict:
    """Sweep one model (``method`` "sparse" or "dense") on both splits; rows of scores per setting."""
    reference = FeatureReference(reference_codes, cfg.percentile)
    splits = [_Split(model, tokenizer, image_size, name, cfg) for name in ("select", "test")]
    values = sorted({v for k in cfg.kinds for v in VALUES[k]})
    rows = []
    base = {s.name: _evaluate(vlm, model, tokenizer, s, lambda c, it: c, cfg.max_new_tokens) for s in splits}
    rows.append({"method": method, "k": 0, "strength": 0.0, **{s: base[s]["all"] for s in base}, "detail": base})
    if method == "sparse":
        feats = {v: concept_features_checked(model, tokenizer, v, max(cfg.ks)) for v in values}
        settings = [(k, s) for k in cfg.ks for s in cfg.strengths]
    else:
        dirs = {(a, b): text_direction(model, tokenizer, a, b) for a in values for b in values if a != b}
        settings = [(0, s) for s in cfg.dense_strengths]
    for k, strength in settings:
        if method == "sparse":
            def edit(c, it, k=k, strength=strength):
                iv = Intervention(tuple(feats[it.source][:k]), tuple(feats[it.target][:k]), strength, True)
                return apply_intervention(c, iv, reference)
        else:
            def edit(c, it, strength=strength):
                return dense_shift(c, dirs[(it.source, it.target)], strength, reference.mean_norm)
        res = {s.name: _evaluate(vlm, model, tokenizer, s, edit, cfg.max_new_tokens) for s in splits}
        rows.append({"method": method, "k": k, "strength": strength, **{s: res[s]["all"] for s in res}, "detail": res})
        if log:
            t = res["test"]["all"]["caption"]
            log(f"{method} k={k} strength={strength}: caption success {t['success']:.2f} "
                f"corrupt {t['corrupt']:.2f}")
    return {"method": method, "config": asdict(cfg), "rows": rows,
            "features": feats if method == "sparse" else None}


def wilson(rate: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """The 95% Wilson score interval of a rate observed on ``n`` answers."""
    if n <= 0:
        return float("nan"), float("nan")
    centre = (rate + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * (rate * (1 - rate) / n + z * z / (4 * n * n)) ** 0.5
    return max(0.0, centre - half), min(1.0, centre + half)


def _ci(rate: float, n: int) -> str:
    lo, hi = wilson(rate, n)
    return f"{rate:.1%} [{100 * lo:.1f}-{100 * hi:.1f}]"


def _n(res: dict, per_kind: bool = False) -> int:
    """Answers behind a rate: images per split and kind, times the kinds unless per kind."""
    c = res["config"]
    return c["n_images"] * (1 if per_kind else len(c["kinds"]))


def choose(rows: list[dict], question: str, max_corruption: float) -> dict:
    """The edited setting with the highest select-split success among those within the corruption budget
    (ties: fewer features, then lower strength); the least corrupting one if none is within it."""
    edited = [r for r in rows if r["strength"] > 0]
    ok = [r for r in edited if r["select"][question]["corrupt"] <= max_corruption]
    if ok:
        return max(ok, key=lambda r: (r["select"][question]["success"], -r["k"], -r["strength"]))
    return min(edited, key=lambda r: (r["select"][question]["corrupt"], -r["select"][question]["success"]))


def markdown_table(results: list[dict], question: str = "caption") -> str:
    """One Markdown table: a row per method and setting, select and test scores for ``question``."""
    n = _n(results[0]) if results else 0
    lines = [f"| method | K | strength | select success | select corrupt | test success (n={n}, 95% CI) | "
             "test corrupt (95% CI) | test clean success | test zero-shot -> target |",
             "|---|---|---|---|---|---|---|---|---|"]
    for res in results:
        best = choose(res["rows"], question, res["config"]["max_corruption"])
        n = _n(res)
        for r in res["rows"]:
            mark = " **(chosen)**" if r is best else (" (no edit)" if r["strength"] == 0 else "")
            sel, te = r["select"][question], r["test"][question]
            k = "-" if r["method"] == "dense" else str(r["k"])
            lines.append(f"| {r['method']}{mark} | {k} | {r['strength']:g} | {sel['success']:.1%} | "
                         f"{sel['corrupt']:.1%} | {_ci(te['success'], n)} | {_ci(te['corrupt'], n)} | "
                         f"{te['clean_success']:.1%} | {r['test']['zeroshot_target']['rate']:.1%} |")
    return "\n".join(lines)


def chosen_by_kind(results: list[dict]) -> str:
    """Markdown: the chosen settings' test scores per concept kind, with the unedited answers' source rate."""
    n = _n(results[0], per_kind=True) if results else 0
    lines = ["| method | question | K | strength | kind | unedited names source | "
             f"success (n={n}, 95% CI) | corrupt (95% CI) | zero-shot -> target |",
             "|---|---|---|---|---|---|---|---|---|"]
    for res in results:
        base = res["rows"][0]["detail"]["test"]
        for question in ("caption", "attribute"):
            b = choose(res["rows"], question, res["config"]["max_corruption"])
            for kind in res["config"]["kinds"]:
                d = b["detail"]["test"][kind]
                k = "-" if res["method"] == "dense" else str(b["k"])
                lines.append(f"| {res['method']} | {question} | {k} | {b['strength']:g} | {kind} | "
                             f"{base[kind][question]['names_source']:.1%} | {_ci(d[question]['success'], n)} | "
                             f"{_ci(d[question]['corrupt'], n)} | {d['zeroshot_target']:.1%} |")
    return "\n".join(lines)


def summary(results: list[dict]) -> dict:
    """The chosen setting per method and question, with its test scores."""
    out = {}
    for res in results:
        for question in ("caption", "attribute"):
            b = choose(res["rows"], question, res["config"]["max_corruption"])
            out[f"{res['method']}/{question}"] = {"k": b["k"], "strength": b["strength"],
                                                  "select": b["select"][question], "test": b["test"][question],
                                                  "test_zeroshot_target": b["test"]["zeroshot_target"]["rate"]}
    return out


def plot(results: list[dict], path: str | Path, question: str = "caption") -> None:
    """Test-split success (solid) and corruption (dotted) against strength: sparse (a line per K, strength in
    multiples of each feature's reference percentile) and dense (strength in mean image-code norms)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter

    fig, axes = plt.subplots(1, len(results), figsize=(5.5 * len(results), 4), squeeze=False)
    for ax, res in zip(axes[0], results, strict=True):
        rows = [r for r in res["rows"] if r["strength"] > 0]
        for k in sorted({r["k"] for r in rows}):
            rs = sorted((r for r in rows if r["k"] == k), key=lambda r: r["strength"])
            x = [r["strength"] for r in rs]
            line, = ax.plot(x, [r["test"][question]["success"] for r in rs], "o-",
                            label=f"K={k} success" if res["method"] == "sparse" else "success")
            ax.plot(x, [r["test"][question]["corrupt"] for r in rs], "x:", color=line.get_color(),
                    label=f"K={k} corruption" if res["method"] == "sparse" else "corruption")
        ax.axhline(0.8, color="grey", lw=0.8, ls="--")
        ax.axhline(0.05, color="grey", lw=0.8, ls=":")
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel("strength (x feature's p99)" if res["method"] == "sparse" else "strength (x mean code norm)")
        ax.set_ylabel("rate (test split)")
        ax.set_title(f"{res['method']}: {question} question")
        ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)


def render_results(steering_json: str | Path) -> Path:
    """Regenerate ``steering.md`` and ``steering.png`` beside a ``steering.json`` from its results (no VLM)."""
    path = Path(steering_json)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        results = data["results"]
    except FileNotFoundError:
        raise ValueError(f"--render {path}: no such file") from None
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ValueError(f"--render {path}: not a steering.json ({type(e).__name__})") from None
    write_results(results, path.parent, data.get("command", ""))
    return path.parent / "steering.md"


def write_results(results: list[dict], out_dir: str | Path, command: str = "") -> dict:
    """Write ``steering.json``, ``steering.md`` and ``steering.png`` into ``out_dir``; returns the summary."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    summ = summary(results)
    write_text_atomic(out / "steering.json", json.dumps({"command": command, "summary": summ, "results": results},
                                                  indent=1))
    md = [f"Command: `{command}`", "", "Caption question (\"what is in the picture?\"):", "",
          markdown_table(results, "caption"), "", "Attribute question (\"what colour is the shape?\" / "
          "\"what shape is it?\"):", "", markdown_table(results, "attribute"), "",
          "Chosen settings on the test split, per concept kind:", "", chosen_by_kind(results), ""]
    write_text_atomic(out / "steering.md", "\n".join(md))
    plot(results, out / "steering.png")
    return summ
