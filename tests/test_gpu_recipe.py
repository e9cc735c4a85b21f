"""Issue 35, item 3: the one-GPU recipe script (benchmarks/gpu_recipe.py). Its CPU dry run (micro model, fixed
batch, a few steps) runs the whole path through ``sparseclip.train.train`` and writes the JSON a GPU run would;
the batch search, the MFU peak table and the refusals are checked without a GPU."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import gpu_recipe  # noqa: E402


@pytest.fixture(scope="module")
def dry(tmp_path_factory) -> tuple[dict, Path]:
    out = tmp_path_factory.mktemp("gpu_recipe")
    assert gpu_recipe.main(["--dry-run", "--out", str(out)]) == 0
    return json.loads((out / gpu_recipe.JSON_NAME).read_text()), out


def test_dry_run_writes_the_gpu_runs_json(dry):
    res, out = dry
    assert res["ran_on"] == "cpu dry run" and res["device"].startswith("cpu")
    assert res["torch"] == torch.__version__ and len(res["load_before"]) == len(res["load_after"]) == 3
    cfg = res["config"]
    assert cfg["train"]["precision"] == "bf16" and cfg["loss"]["memory_efficient"] is True
    assert cfg["model"]["head"]["kind"] == "relu" and cfg["train"]["device"] == "cpu"
    assert res["batch"] == cfg["train"]["batch_size"] == 16 and res["batch_search"] == []
    assert 2 <= res["steps"] <= 6 and cfg["train"]["steps"] == res["steps"]
    assert res["samples_per_s"] > 0 and res["probe"]["samples_per_s"] > 0 and res["train_wall_s"] > 0
    assert res["peak_memory_bytes"] is None and "GPU only" in res["peak_memory_note"]
    assert res["mfu"] is None and res["mfu_note"].startswith("mfu null: ")
    assert sorted(p.name for p in out.iterdir()) == [gpu_recipe.JSON_NAME, "run"]  # probes removed, no temp file


def test_dry_run_curve_has_every_logged_step(dry):
    res, _ = dry
    curve = res["curve"]
    assert [c["step"] for c in curve] == list(range(1, res["steps"] + 1))  # log_every 1 on a dry run
    assert [c["samples"] for c in curve] == [c["step"] * res["batch"] for c in curve]
    for c in curve:
        for side in ("image", "text"):
            assert 0 < c[f"{side}_l0_pct"] <= 100
            assert 0 <= c[f"{side}_alive_pct"] <= 100 and 0 <= c[f"{side}_unfired_pct"] <= 100
    log = [json.loads(line) for line in (dry[1] / "run" / "log.jsonl").read_text().splitlines()]
    assert [c["image_l0_pct"] for c in curve] == [r["image_l0_pct"] for r in log]


def test_dry_run_flops_count_towers_heads_and_loss(dry):
    res, _ = dry
    f, m = res["flops"], res["config"]["model"]
    assert f["code_dim"] == m["head"]["expansion"] * m["embed_dim"]
    assert f["loss"] == 6 * res["batch"] * f["code_dim"]
    assert f["per_sample"] == f["towers_and_heads"] + f["loss"]
    head_weights = 2 * m["vision_cfg"]["width"] * f["code_dim"]  # placement=replace: tower width -> code_dim
    assert f["towers_and_heads"] > 6 * head_weights  # the heads' forward + backward alone; the towers on top


def test_largest_batch_doubles_then_bisects():
    seen = []

    def fits(b):
        seen.append(b)
        return b <= 1000, {}

    batch, trials = gpu_recipe.largest_batch(fits, 128, 32768, refine=2)
    assert seen == [128, 256, 512, 1024, 768, 896] and batch == 896
    assert [t["fits"] for t in trials] == [True, True, True, False, True, True]
    assert gpu_recipe.largest_batch(lambda b: (True, {}), 128, 1024, refine=2)[0] == 1024
    with pytest.raises(gpu_recipe.Refused, match="--batch-start 128 does not fit"):
        gpu_recipe.largest_batch(lambda b: (False, {"why": "out of memory"}), 128, 1024, refine=2)


def test_peak_table_and_unknown_device():
    assert gpu_recipe.peak_bf16_flops("NVIDIA H100 80GB HBM3")[0] == 989e12
    assert gpu_recipe.peak_bf16_flops("NVIDIA H100 PCIe")[0] == 756e12
    assert gpu_recipe.peak_bf16_flops("NVIDIA H200")[0] == 989e12
    assert gpu_recipe.peak_bf16_flops("NVIDIA A100-SXM4-80GB")[0] == 312e12
    peak, why = gpu_recipe.peak_bf16_flops("Tesla T4")
    assert peak is None and "'Tesla T4'" in why


def test_steady_rate_drops_the_first_interval():
    records = [{"step": 1, "samples_per_s": 1.0}, {"step": 3, "samples_per_s": 100.0},
               {"step": 4, "samples_per_s": 25.0}]
    rate, steps = gpu_recipe.steady_rate(records, 10)
    assert steps == 3 and rate == pytest.approx(30 / (20 / 100 + 10 / 25))


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_gpu_run_without_cuda_is_one_line_exit_2(tmp_path, capsys):
    assert gpu_recipe.main(["--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("gpu_recipe: error: no CUDA device") and "\n" not in err
    assert not (tmp_path / gpu_recipe.JSON_NAME).exists()


def test_missing_data_is_one_line_exit_2(tmp_path, capsys):
    pytest.importorskip("webdataset")
    assert gpu_recipe.main(["--dry-run", "--out", str(tmp_path), "--data", str(tmp_path / "no/{0..3}.tar")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("gpu_recipe: error: --data: no shard found (4 named") and "\n" not in err
