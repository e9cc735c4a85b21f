"""``sparseclip demo``: train a dense and a Sparse CLIP with the same towers on the procedural world,
evaluate both, and write a results table, plots and (when the analysis modules are present) a report."""

from __future__ import annotations

import json
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from ..checkpoint import load_model  # noqa: E402
from ..config import Config, fingerprint, load_config  # noqa: E402
from ..eval import evaluate  # noqa: E402
from .logger import read_log  # noqa: E402
from .loop import train  # noqa: E402

MODELS = (("dense", "tiny_dense"), ("sparse", "tiny_sparse"))


def result_row(name: str, cfg: Config, res: dict, seconds: float) -> dict:
    zs = {f"zs_{k}": v["acc1"] for k, v in res["zeroshot"].items()}
    lp = {f"probe_{k}": v["acc1"] for k, v in res["linear_probe"].items()}
    r = res["retrieval"]
    s = res["sparsity"]
    return {
        "model": name, "head": cfg.model.head.kind, "code_dim": s["image"]["dim"],
        **zs, "zs_mean": res["zeroshot_mean_acc1"],
        "t2i_R@1": r["text_to_image_R@1"], "i2t_R@1": r["image_to_text_R@1"],
        "t2i_R@5": r["text_to_image_R@5"], "i2t_R@5": r["image_to_text_R@5"],
        **lp, "probe_mean": res["linear_probe_mean_acc1"],
        "image_L0": s["image"]["L0"], "image_L0_pct": s["image"]["L0_pct"],
        "text_L0": s["text"]["L0"], "text_L0_pct": s["text"]["L0_pct"],
        "image_active_pct": s["image"]["active_pct"], "text_active_pct": s["text"]["active_pct"],
        "train_seconds": seconds,
    }


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.3f}" if abs(v) < 10 else f"{v:.1f}"
    return str(v)


def results_markdown(rows: list[dict], steps: int, batch: int) -> str:
    """A transposed Markdown table (one column per model) with a short explanation."""
    keys = list(rows[0])
    lines = ["# sparseclip demo results", "",
             f"Same towers, data, seed and steps ({steps} steps x batch {batch}) for both models; "
             "evaluated on held-out procedural-world images (zero-shot and linear-probe accuracy, retrieval "
             "recall, and sparsity of the codes: L0 = mean non-zero dims per input, active = % of dims firing "
             "(> 0.001) on at least 2 inputs).", "",
             "| metric | " + " | ".join(r["model"] for r in rows) + " |",
             "|---|" + "---|" * len(rows)]
    for k in keys[1:]:
        lines.append(f"| {k} | " + " | ".join(_fmt(r[k]) for r in rows) + " |")
    d, s = rows[0], rows[-1]
    lines += ["", f"Sparse - dense mean zero-shot accuracy: {100 * (s['zs_mean'] - d['zs_mean']):+.1f} points; "
              f"sparse image L0: {s['image_L0']:.1f} of {s['code_dim']} dims ({s['image_L0_pct']:.2f}%)."]
    return "\n".join(lines) + "\n"


def plot_training(runs: dict[str, Path], out: Path) -> list[Path]:
    """Loss and image-L0 curves over steps for each run."""
    paths = []
    for key, ylabel, fname in (("loss", "contrastive loss", "loss.png"),
                               ("image_l0_pct", "image L0 (% of dims)", "l0.png")):
        fig, ax = plt.subplots(figsize=(5.5, 3.5))
        for name, run in runs.items():
            log = read_log(run)
            ax.plot([r["step"] for r in log], [r[key] for r in log], label=name)
        ax.set_xlabel("step")
        ax.set_ylabel(ylabel)
        if key == "image_l0_pct":
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        fig.savefig(out / fname, dpi=120)
        plt.close(fig)
        paths.append(out / fname)
    return paths


def plot_accuracy(rows: list[dict], out: Path) -> Path:
    """Grouped bars: zero-shot per task, mean, and retrieval R@1 for each model."""
    metrics = [k for k in rows[0] if k.startswith("zs_")] + ["t2i_R@1", "i2t_R@1", "probe_mean"]
    fig, ax = plt.subplots(figsize=(8, 3.6))
    width = 0.8 / len(rows)
    for i, r in enumerate(rows):
        xs = [j + i * width for j in range(len(metrics))]
        ax.bar(xs, [r[m] for m in metrics], width=width, label=r["model"])
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(metrics))])
    ax.set_xticklabels(metrics, rotation=30, ha="right")
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy / recall")
    ax.legend()
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "accuracy.png", dpi=120)
    plt.close(fig)
    return out / "accuracy.png"


def run_demo(out_dir: str | Path = "demo_out", steps: int | None = None, overrides: list[str] | None = None,
             progress: bool = True, resume: bool = True) -> Path:
    """Train, evaluate and compare the dense and sparse tiny models; returns the output folder."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows, runs = [], {}
    extra = list(overrides or []) + ([f"train.steps={steps}"] if steps else [])
    for name, preset in MODELS:
        cfg = load_config(preset, [f"train.output_dir={out / name}", *extra])
        run = out / name
        t0 = time.time()
        if resume and (run / "final" / "model.safetensors").is_file() and same_config(run, cfg):
            print(f"[demo] {name}: already trained, reusing {run}")
            seconds = json.loads((run / "eval.json").read_text()).get("train_seconds", 0.0) \
                if (run / "eval.json").is_file() else 0.0
        else:
            print(f"[demo] training {name} ({cfg.model.head.kind} head) for {cfg.train.steps} steps")
            train(cfg, progress=progress)
            seconds = time.time() - t0
        model, cfg = load_model(run)
        print(f"[demo] evaluating {name}")
        res = evaluate(model, cfg, progress=progress)
        res["train_seconds"] = seconds
        (run / "eval.json").write_text(json.dumps(res, indent=2))
        rows.append(result_row(name, cfg, res, seconds))
        runs[name] = run
    plots = out / "plots"
    plots.mkdir(exist_ok=True)
    plot_training(runs, plots)
    plot_accuracy(rows, plots)
    (out / "results.json").write_text(json.dumps({"rows": rows}, indent=2))
    md = results_markdown(rows, cfg.train.steps, cfg.train.batch_size)
    (out / "results.md").write_text(md)
    print(md)
    return out


def same_config(run: Path, cfg: Config) -> bool:
    try:
        return fingerprint(json.loads((run / "config.json").read_text())) == fingerprint(cfg.to_dict())
    except (OSError, json.JSONDecodeError):
        return False
