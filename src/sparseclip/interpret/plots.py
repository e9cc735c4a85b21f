"""PNG plots of the analysis (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from ..files.atomic import save_figure


def _figure(width: float = 6.0, height: float = 4.0, rows: int = 1, cols: int = 1):
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt, plt.subplots(rows, cols, figsize=(width, height), dpi=100, squeeze=False if rows * cols > 1
                             else True)


def _save(plt, fig, path: str | Path) -> Path:
    fig.tight_layout()
    return save_figure(fig, path)


def frequency_histogram_plot(freqs: Mapping[str, np.ndarray], path: str | Path, n_inputs: int,
                             bins: int = 30) -> Path:
    """Histogram of per-feature firing frequencies (log x axis), one outline per model."""
    plt, (fig, ax) = _figure()
    edges = np.logspace(np.log10(1.0 / max(n_inputs, 2)), 0, bins + 1)
    for name, f in freqs.items():
        f = np.asarray(f)
        dead = int((f == 0).sum())
        ax.hist(f[f > 0], bins=edges, histtype="step", linewidth=1.5, label=f"{name} ({dead} dead)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("firing frequency (fraction of inputs, > tau)")
    ax.set_ylabel("features")
    ax.set_title("Feature firing frequency")
    ax.legend(fontsize=8)
    return _save(plt, fig, path)


def modality_scatter(points: Mapping[str, tuple[np.ndarray, np.ndarray]], path: str | Path,
                     band: tuple[float, float] = (0.1, 0.9), max_cols: int = 4) -> Path:
    """Image share (y) against activation density (log x) of live features, one panel per model."""
    n = max(len(points), 1)
    cols = min(n, max_cols)
    rows = -(-n // cols)
    plt, (fig, axes) = _figure(4.2 * cols, 3.6 * rows, rows=rows, cols=cols)
    flat = list(np.asarray(axes).ravel())
    for ax, (name, (density, share)) in zip(flat, points.items(), strict=False):
        d, s = np.asarray(density), np.asarray(share)
        ok = (d > 0) & ~np.isnan(s)
        ax.scatter(d[ok], s[ok], s=6, alpha=0.5)
        ax.axhspan(band[0], band[1], color="green", alpha=0.07)
        if ok.any():
            ax.set_xscale("log")
        ax.set_ylim(-0.03, 1.03)
        ax.set_xlabel("activation density")
        ax.set_ylabel("image share of activation mass")
        ax.set_title(name, fontsize=10)
    for ax in flat[len(points):]:
        ax.axis("off")
    return _save(plt, fig, path)


def clarity_bars(values: Mapping[str, float], baseline: float | None, path: str | Path) -> Path:
    """Bar chart of clarity per model, with the random-inputs baseline as a dashed line."""
    plt, (fig, ax) = _figure(1.6 + 1.1 * len(values), 3.6)
    names = list(values)
    ax.bar(names, [values[k] for k in names], color="#4c72b0")
    if baseline is not None and not np.isnan(baseline):
        ax.axhline(baseline, color="k", linestyle="--", label=f"random inputs ({baseline:.3f})")
        ax.legend(fontsize=8)
    ax.set_ylabel("clarity (mean pairwise cosine)")
    ax.set_title("Clarity")
    ax.tick_params(axis="x", rotation=20)
    return _save(plt, fig, path)


def over_training(steps: Sequence[int], series: Mapping[str, Sequence[float]], path: str | Path,
                  ylabel: str, title: str, logy: bool = False) -> Path:
    """Line plot of one or more quantities against the training step."""
    plt, (fig, ax) = _figure()
    for name, ys in series.items():
        ax.plot(steps, ys, marker="o", label=name)
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel("training step")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=8)
    return _save(plt, fig, path)


def modality_over_training(steps: Sequence[int], histograms: Sequence[Sequence[int]], path: str | Path) -> Path:
    """Stacked shares of live features per image-share bin, per checkpoint."""
    plt, (fig, ax) = _figure()
    h = np.asarray(histograms, dtype=np.float64)
    h = h / np.maximum(h.sum(axis=1, keepdims=True), 1)
    nb = h.shape[1]
    labels = [str(s) for s in steps]
    bottom = np.zeros(len(steps))
    cmap = __import__("matplotlib").colormaps["coolwarm"]
    for b in range(nb):
        ax.bar(labels, h[:, b], bottom=bottom, color=cmap(b / max(nb - 1, 1)),
               label=f"{b / nb:.1f}-{(b + 1) / nb:.1f}" if b in (0, nb // 2, nb - 1) else None)
        bottom += h[:, b]
    ax.set_xlabel("training step")
    ax.set_ylabel("share of live features")
    ax.set_title("Image share of live features over training")
    ax.legend(fontsize=7, title="image share (0: text only)", title_fontsize=7, loc="upper left",
              bbox_to_anchor=(1.0, 1.0))
    return _save(plt, fig, path)
