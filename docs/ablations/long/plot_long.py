"""Plot the 3000-step sparse vs dense pair from their committed logs: python docs/ablations/long/plot_long.py"""

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

HERE = Path(__file__).resolve().parent
runs = {"ReLU x8 (512 dims)": "long3000", "dense (64 dims)": "long3000_dense"}
fig, axes = plt.subplots(1, 3, figsize=(12, 3.6))
for label, name in runs.items():
    log = [json.loads(line) for line in (HERE / name / "log.jsonl").read_text().splitlines() if line.strip()]
    steps = [r["step"] for r in log]
    axes[0].plot(steps, [r["loss"] for r in log], label=label)
    axes[1].plot(steps, [r["logit_scale"] for r in log], label=label)
    if "dense" not in name:
        axes[2].plot(steps, [r["image_l0_pct"] for r in log], label="image")
        axes[2].plot(steps, [r["text_l0_pct"] for r in log], label="text")
for ax, title in zip(axes, ["contrastive loss (training batch)", "logit scale (cap 100)",
                            "ReLU code L0, % of 512 dims (training batch)"], strict=True):
    ax.set_title(title, fontsize=9)
    ax.set_xlabel("step", fontsize=8)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
fig.tight_layout()
fig.savefig(HERE / "long3000.png", dpi=110)
print(HERE / "long3000.png")
