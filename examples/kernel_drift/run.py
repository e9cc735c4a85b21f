"""Why the demo's ``lite_sparse`` row moves with the CPU: the same run under other float kernels of this machine.

Issue 38 saw the demo's ``lite_sparse`` zero-shot at 0.812 on one machine and 0.824 on another (same code and
seed), while ``lite_dense`` and ``lite_wide`` were identical. A CPU changes which BLAS and vectorised kernels run,
so the order of float sums, so the last bits of every product. This script replays that on one machine: it trains
the demo's ``lite_sparse`` and ``lite_dense`` presets (same seed, the same cached tower features, hard-linked) in
a fresh process per kernel variant and evaluates each as the demo does (``sparseclip.eval.run.evaluate_run``, the
world's standard validation scenes):

- ``this CPU``: no setting changed (the kernels this machine picks);
- ``ATen scalar``: ``ATEN_CPU_CAPABILITY=default`` (PyTorch's own kernels without SIMD, as on an old CPU);
- ``MKL compatible``: ``MKL_CBWR=COMPATIBLE`` (MKL's sums in a CPU-independent order);
- ``1 thread``: ``OMP_NUM_THREADS=1`` / ``MKL_NUM_THREADS=1`` (a machine with another core count splits the sums
  differently).

Per run it records the accuracy and L0 of the evaluation and how far the final head weights are from the
``this CPU`` run's (max absolute difference): 0 means the variant computed the very same model. Writes
``OUT/kernels.json``; ``python -m sparseclip.experiments.doc_blocks`` renders it into docs/demo_results.md::

    python examples/kernel_drift/run.py --out docs/demo --work runs/kernel_drift
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

PRESETS = ("lite_sparse", "lite_dense")
#: (name, environment additions)
VARIANTS: tuple[tuple[str, dict[str, str]], ...] = (
    ("this CPU", {}),
    ("ATen scalar", {"ATEN_CPU_CAPABILITY": "default"}),
    ("MKL compatible", {"MKL_CBWR": "COMPATIBLE"}),
    ("1 thread", {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}),
)


def one(run: Path, preset: str, cache: Path) -> dict:
    """Train ``preset`` into ``run`` (reading the shared feature cache ``cache`` when it exists, else filling it)
    and evaluate it; in the calling process, whose environment sets the kernels."""
    import torch

    from sparseclip.config import load_config
    from sparseclip.eval.run import evaluate_run
    from sparseclip.experiments.demo import health_columns  # the demo's columns for the same counts
    from sparseclip.train import train

    cfg = load_config(preset, [f"train.output_dir={run}", "train.progress=false", "train.tensorboard=false",
                               "train.ckpt_fractions=[]"])
    run.mkdir(parents=True, exist_ok=True)
    _share(cache, run / "features.safetensors")  # the first variant fills the cache, the others read it
    t0 = time.time()
    train(cfg, overwrite=True)
    seconds = time.time() - t0
    _share(run / "features.safetensors", cache)
    res = evaluate_run(run, probe=False, progress=False)
    s, r = res["sparsity"], res["retrieval"]
    return {"zs": res["zeroshot_mean_acc1"], "t2i": r["text_to_image_R@1"], "i2t": r["image_to_text_R@1"],
            "image_L0_pct": s["image"]["L0_pct"], "text_L0_pct": s["text"]["L0_pct"], "train_seconds": seconds,
            "cpu_capability": torch.backends.cpu.get_cpu_capability(), "threads": torch.get_num_threads(),
            **health_columns(res["dictionary"])}


def add_health(out: Path, work: Path) -> None:
    """Count the dictionary on the training inputs of every run of ``OUT/kernels.json`` that has no count yet
    (runs recorded before the script counted it), from the run folders in ``work``."""
    from sparseclip.eval.health import training_health
    from sparseclip.experiments.demo import health_columns
    from sparseclip.files.atomic import write_json_atomic
    from sparseclip.model.checkpoint import load_model

    data = json.loads((out / "kernels.json").read_text())
    for row in data["rows"]:
        if "image_active_train_pct" not in row:
            run = work / row["preset"] / row["variant"].replace(" ", "_")
            model, cfg = load_model(run)
            row |= health_columns(training_health(model, cfg, run))
    write_json_atomic(out / "kernels.json", data)


def _share(src: Path, dst: Path) -> None:
    """Hard-link ``src`` to ``dst`` when there is one and not the other."""
    if src.is_file() and not dst.exists():
        os.link(src, dst)


def weight_gap(a: Path, b: Path) -> float:
    """Max absolute difference between two runs' final weights (over every tensor they share)."""
    from safetensors.torch import load_file

    wa, wb = (load_file(str(p / "final" / "model.safetensors")) for p in (a, b))
    return max(float((wa[k].double() - wb[k].double()).abs().max()) for k in wa if k in wb)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, default=Path("docs/demo"), help="where kernels.json goes")
    p.add_argument("--work", type=Path, default=Path("runs/kernel_drift"), help="run folders")
    p.add_argument("--add-health", action="store_true",
                   help="only count the dictionary's health for rows of OUT/kernels.json that lack it")
    p.add_argument("--one", nargs=3, metavar=("RUN", "PRESET", "CACHE"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.add_health:
        add_health(args.out, args.work)
        return 0
    if args.one:
        run, preset, cache = args.one
        print(json.dumps(one(Path(run), preset, Path(cache))))
        return 0
    rows = []
    for preset in PRESETS:
        cache = args.work / f"{preset}.features.safetensors"
        for name, env in VARIANTS:
            run = args.work / preset / name.replace(" ", "_")
            done = subprocess.run([sys.executable, __file__, "--one", str(run), preset, str(cache)],
                                  env={**os.environ, **env}, capture_output=True, text=True)
            if done.returncode != 0:
                sys.exit(f"{preset} / {name}: {done.stderr.strip()[-800:]}")
            row = {"preset": preset, "variant": name, "env": env, **json.loads(done.stdout.strip().splitlines()[-1])}
            row["max_weight_gap"] = weight_gap(run, args.work / preset / VARIANTS[0][0].replace(" ", "_"))
            rows.append(row)
            print(json.dumps(row), flush=True)
    import torch

    from sparseclip.files.atomic import write_json_atomic

    meta = {"command": "python examples/kernel_drift/run.py " + " ".join(argv if argv is not None else sys.argv[1:]),
            "machine": platform.processor() or platform.machine(), "torch": torch.__version__,
            "blas": torch.__config__.show().split("BLAS_INFO=")[-1].split(",")[0]}
    args.out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(args.out / "kernels.json", {**meta, "rows": rows})
    print(f"wrote {args.out / 'kernels.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
