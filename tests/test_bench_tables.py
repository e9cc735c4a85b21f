"""Benchmark reports rendered from their JSON (sparseclip.experiments.bench_tables) and the steering example's
generated block: the figures and verdicts are computed from the stored runs, and a block that disagrees with the
benchmark it cites is refused."""

import json

import pytest

from sparseclip.experiments.bench_tables import loss_memory_table, samples_per_s, throughput_report


def _run(system, head, rates, wall=10.0):
    return {"system": system, "head": head, "rates": rates, "batch_size": 32, "wall_s": wall}


SETUP = {"model": "ViT-S-32", "embed_dim": 384, "batch_size": 32, "precision": "fp32", "device": "cpu", "threads": 2,
         "steps": 2, "warmup_steps": 1, "expansion": 32, "image_size": 224, "context_length": 77,
         "machine": "x86_64", "cpus": 2, "torch": "t", "open_clip": "o", "load_before": "0.10 0.20 0.30",
         "load_after": "1.00 1.10 1.20"}


def test_throughput_report_computes_rates_ratios_and_verdicts():
    # per-step rates 4 and 8 samples/s on a batch of 32: 64 samples in 8 + 4 = 12 s -> 5.333 samples/s
    assert samples_per_s(_run("a", "dense", [4.0, 8.0])) == pytest.approx(64 / 12)
    data = {"setup": SETUP, "runs": [_run("OpenCLIP open_clip_train", "dense", [5.0, 5.0]),
                                     _run("sparseclip train", "dense", [6.0, 6.0]),
                                     _run("sparseclip train", "relu 32x (12288)", [4.0, 4.0])]}
    text = throughput_report(data)
    assert "1.200x" in text  # ours dense / OpenCLIP
    assert "target ours dense >= 1.00x OpenCLIP samples/s: 1.200x  PASS" in text
    assert "step time <= 1.15x ours dense: 1.500x  MISS" in text  # 6 / 4
    assert "load average before: 0.10 0.20 0.30, after: 1.00 1.10 1.20" in text
    data["runs"][1]["rates"] = [4.0, 4.0]
    assert "samples/s: 0.800x  MISS" in throughput_report(data)


def test_loss_memory_table_and_its_target_line():
    mib = 2 ** 20

    def row(ranks, batch, width, n_alloc, c_alloc, n_t, c_t):
        return {"ranks": ranks, "batch": batch, "width": width, "grads_bytes": 2 * (batch // ranks) * width * 4,
                "naive_time": n_t, "chunked_time": c_t, "naive_alloc": n_alloc * mib, "chunked_alloc": c_alloc * mib,
                "naive_rss": n_alloc * mib, "chunked_rss": None}
    data = {"setup": {"cpus": 2, "density": 0.01, "load_before": "0.1", "load_after": "0.2"},
            "rows": [row(1, 512, 8192, 64, 32, 1.0, 1.0), row(4, 1024, 16384, 300, 60, 10.0, 5.0)]}
    text = loss_memory_table(data)
    assert "| 512 | 8,192 | 1 | 1.00 | 1.00 | 1.00x | 64 | 32 | 2.00x | 64 | n/a | 32 |" in text
    assert "on 4 ranks): >= 4x less peak memory per rank than the naive loss at <= 1.2x its time: 5.00x at 0.50x, " \
           "PASS." in text
    data["rows"][1]["chunked_time"] = 13.0
    assert "5.00x at 1.30x, MISS." in loss_memory_table(data)


def test_steer_example_block_must_use_the_setting_the_benchmark_chose(tmp_path):
    from sparseclip.report.generated import GENERATORS, GeneratedError
    from sparseclip.steer.pipeline import FeatureChange, SteerOutcome

    rates = {"success": 0.5, "corrupt": 0.1, "side_effect": 0.1}
    unedited = {**rates, "success": 0.0}
    rows = [{"method": "evidence", "k": 0, "strength": 0.0, "select": {"caption": unedited, "attribute": unedited},
             "test": {"caption": rates, "attribute": rates, "zeroshot_target": {"rate": 0.0}}},
            {"method": "evidence", "k": 8, "strength": 4.0, "select": {"caption": rates, "attribute": rates},
             "test": {"caption": rates, "attribute": rates, "zeroshot_target": {"rate": 0.0}}}]
    res = {"method": "evidence", "config": {"n_images": 10, "kinds": ["color"], "max_corruption": 0.05},
           "rows": rows}
    (tmp_path / "steering.json").write_text(json.dumps({"results": [res]}))
    out = SteerOutcome("what is in the picture?", "a red star", "a blue star", "scene 5",
                       [FeatureChange(3, "blue", "boost", 0.0, 2.5)],
                       {"method": "evidence", "suppress": ["red"], "boost": ["blue"], "k": 8, "strength": 4.0,
                        "relative": True, "question": "caption", "model": "M", "vlm": "V", "image": "",
                        "world_index": 5})
    (tmp_path / "ex.json").write_text(json.dumps(out.to_dict()))
    block = GENERATORS.get("steer-example")(tmp_path, ["ex.json", "steering.json"])
    assert "--method evidence \\\n    -k 8 --strength 4" in block and out.text() in block
    assert "       3 blue                   boost       0.000 ->    2.500" in block
    out.setting["k"] = 2
    (tmp_path / "ex.json").write_text(json.dumps(out.to_dict()))
    with pytest.raises(GeneratedError, match="not the setting steering.json chose for that method on the caption"):
        GENERATORS.get("steer-example")(tmp_path, ["ex.json", "steering.json"])
