"""The run's training curves as one picture: ``RUN/plots/training.png`` (contrastive loss, L0 of the training
batches, and the share of features that fired on no training input since the previous log record), drawn from
``log.jsonl`` when training ends."""

from __future__ import annotations

from pathlib import Path

from ..model.rundir import RunDir

#: (log key per modality, y label, log y axis) of each panel after the loss
PANELS = (("l0_pct", "L0 (% of dims, training batch)", True),
          ("unfired_pct", "features unfired since the\nprevious record (%)", False))


def plot_training_curves(run_dir: str | Path, records: list[dict]) -> Path | None:
    """Draw the run's curves into ``RUN/plots/training.png``; None when there is nothing to draw."""
    if not records:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FormatStrFormatter

    from ..files.atomic import save_figure

    steps = [r["step"] for r in records]
    fig, axes = plt.subplots(1, 1 + len(PANELS), figsize=(12, 3.4))
    axes[0].plot(steps, [r.get("loss") for r in records], color="k")
    axes[0].set_ylabel("contrastive loss")
    for ax, (key, label, log_y) in zip(axes[1:], PANELS, strict=True):
        for side, colour in (("image", "tab:blue"), ("text", "tab:orange")):
            ys = [r.get(f"{side}_{key}") for r in records]
            if any(y is not None for y in ys):
                ax.plot(steps, [float("nan") if y is None else y for y in ys], label=side, color=colour)
        ax.set_ylabel(label)
        if log_y:
            ax.set_yscale("log")
            ax.yaxis.set_major_formatter(FormatStrFormatter("%g"))
            ax.yaxis.set_minor_formatter(FormatStrFormatter("%g"))
        ax.legend(loc="best", fontsize=8)
    for ax in axes:
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    fig.suptitle(f"training curves: {Path(run_dir).name}", fontsize=10)
    fig.tight_layout()
    return save_figure(fig, RunDir(run_dir).plots / "training.png", dpi=110)
