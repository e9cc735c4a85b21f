"""The levers that keep the dictionary alive (train.dictionary): data-aware initialisation and dead-unit
resampling, on synthetic tower features with a common component (as the lite towers have)."""

from __future__ import annotations

import json

import pytest
import torch

from sparseclip.config import ConfigError, load_config
from sparseclip.model.heads import create_head
from sparseclip.train.dictionary import DictionaryKeeper, aim_units, check_levers


def _feats(n: int = 3000, d: int = 24, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    common = torch.zeros(d)
    common[0] = 4.0  # a strong common component: every input has a large positive mean-direction part
    return common + torch.randn(n, d, generator=g)


@pytest.mark.parametrize("bias", [False, True])
def test_aimed_units_fire_on_the_rate_asked(bias):
    x = _feats()
    head = create_head("relu", 24, 64, bias=bias)
    gen = torch.Generator().manual_seed(1)
    units = torch.arange(64)
    anchors = torch.randint(x.shape[0], (64,), generator=gen)
    aim_units(head, x, anchors, units, rate=0.05, gen=gen)
    with torch.no_grad():
        rate = (head(x) > 1e-3).float().mean(0)
    assert rate.min() > 0.02 and rate.max() < 0.09  # each unit near 5% (a 4,096-row sample sets the threshold)
    assert abs(float(rate.mean()) - 0.05) < 0.01
    # each unit fires most on inputs like its anchor: the anchor scores above the unit's threshold
    with torch.no_grad():
        assert (head(x[anchors]).diagonal() > 0).float().mean() > 0.9


def test_aim_touches_only_the_units_asked():
    x = _feats()
    head = create_head("relu", 24, 16)
    before = head.proj.weight.detach().clone()
    aim_units(head, x, torch.tensor([5, 7]), torch.tensor([2, 9]), 0.1, torch.Generator().manual_seed(0))
    changed = (head.proj.weight != before).any(1)
    assert changed.nonzero().flatten().tolist() == [2, 9]


def _keeper_cfg(**over):
    cfg = load_config("micro", [f"{k}={v}" for k, v in over.items()])
    return cfg


class _Model(torch.nn.Module):
    def __init__(self, d_img: int, d_txt: int, out: int):
        super().__init__()
        self.image_head = create_head("relu", d_img, out)
        self.text_head = create_head("relu", d_txt, out)


def test_resampling_revives_dead_units_and_zeroes_their_moments():
    img, txt = _feats(2000, 24, 0), _feats(2000, 16, 1)
    cfg = _keeper_cfg(**{"train.resample_every": 5, "train.resample_until": 1.0, "train.steps": 20,
                         "model.head.init_rate": 0.05})
    model = _Model(24, 16, 32)
    with torch.no_grad():  # kill units 0-9 on images and 20-24 on texts: pointing against the common component
        model.image_head.proj.weight[:10] = 0.0
        model.image_head.proj.weight[:10, 0] = -1.0
        model.text_head.proj.weight[20:25] = 0.0
        model.text_head.proj.weight[20:25, 0] = -1.0
    opt = torch.optim.AdamW(list(model.parameters()), lr=1e-3)
    loss = model.image_head(img[:64]).sum() + model.text_head(txt[:64]).sum()
    loss.backward()
    opt.step()
    keeper = DictionaryKeeper(cfg, img, txt)
    dead = keeper.dead_units(model).tolist()
    assert set(range(10)) | set(range(20, 25)) <= set(dead)
    assert keeper.after_step(3, model, opt) == 0  # not a resampling step
    n = keeper.after_step(5, model, opt)
    assert n == len(dead)
    assert keeper.dead_units(model).numel() == 0
    state = opt.state[model.image_head.proj.weight]
    assert state["exp_avg"][:10].abs().sum() == 0 and state["exp_avg_sq"][:10].abs().sum() == 0
    assert keeper.after_step(20, model, opt) == 0  # never at the last step


def test_levers_refused_without_cached_features():
    cfg = load_config("micro", ["model.head.init=data"])
    with pytest.raises(ConfigError, match="model.head.init=data: needs both towers frozen"):
        check_levers(cfg, cached=False)
    check_levers(cfg, cached=True)
    with pytest.raises(ConfigError, match="model.head.init:"):
        load_config("micro", ["model.head.init=orthogonal"])
    with pytest.raises(ConfigError, match="init_rate"):
        load_config("micro", ["model.head.init_rate=1.5"])


def test_trainer_levers_log_resampling_and_resume_exactly(tmp_path):
    from safetensors.torch import load_file

    from sparseclip.data.export import import_world
    from sparseclip.train import train
    from sparseclip.train.logger import read_log

    import_world(tmp_path / "data", n_train=60, n_test=1, captions=1)
    base = ["data.kind=csv", f"data.train_data={tmp_path / 'data' / 'train.csv'}", "model.freeze_image=true",
            "model.freeze_text=true", "model.allow_random_frozen=true", "train.steps=12", "train.batch_size=16",
            "train.log_every=3", "train.lr=3e-2", "train.warmup=0", "train.tensorboard=false",
            "train.progress=false", "train.ckpt_fractions=[]", "train.ckpt_every=6", "model.head.init=data",
            "model.head.init_rate=0.05", "train.resample_every=3", "train.resample_until=1.0",
            f"train.output_dir={tmp_path / 'run'}"]
    cfg = load_config("micro", base)
    run = train(cfg)
    log = read_log(run)
    assert [r["resampled_units"] for r in log][-1] == 0  # the last step never resamples
    assert all("resampled_units" in r for r in log)
    first = log[0]  # data-aware start: both modalities sparse from the first steps (micro: 8 x 64 units)
    assert first["image_l0_pct"] < 20 and first["text_l0_pct"] < 20
    wa = load_file(str(run / "final" / "model.safetensors"))
    import shutil

    shutil.rmtree(run / "final")
    train(cfg, resume=str(run / "checkpoints" / "step_000006"))
    wr = load_file(str(run / "final" / "model.safetensors"))
    assert all(torch.equal(wa[k], wr[k]) for k in wa)
    again = read_log(run)
    assert again == [{**r, "samples_per_s": r2["samples_per_s"]} for r, r2 in zip(log, again, strict=True)]


def _health_script(name: str = "dictionary_health"):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "examples" / name / "run.py"
    spec = importlib.util.spec_from_file_location(f"{name}_run", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _hrow(label, kind, sel, test=None, seed=0):
    def m(zs, t2i, i2t, l0, active):
        return {"zs": zs, "t2i": t2i, "i2t": i2t, "image_L0_pct": l0, "text_L0_pct": l0,
                "image_active_train": active, "text_active_train": active, "image_dead_train": 100 - active,
                "text_dead_train": 100 - active, "active_both_train": active}
    return {"label": label, "kind": kind, "lever": kind, "seed": seed, "overrides": [], "select": m(*sel),
            "test": m(*(test or sel))}


def test_health_rule_prefers_level_and_alive_and_reads_the_select_split_only():
    g = _health_script()
    rows = [_hrow("dense a", "dense", (0.80, 0.30, 0.30, 100, 100)),
            _hrow("dense b", "dense", (0.70, 0.20, 0.20, 100, 100)),
            _hrow("wide", "wide", (0.82, 0.31, 0.31, 100, 100)),
            # sparsest and alive on test, but below the dense head on select: test figures must not count
            _hrow("flattered", "paper", (0.70, 0.29, 0.20, 0.5, 90), test=(0.99, 0.99, 0.99, 0.5, 90)),
            _hrow("dead but sparse", "paper", (0.81, 0.31, 0.31, 0.8, 30)),
            _hrow("alive", "paper", (0.81, 0.31, 0.30, 1.5, 90)),
            _hrow("alive, denser", "paper", (0.85, 0.35, 0.35, 4.0, 95)),
            _hrow("resample", "departure", (0.70, 0.29, 0.20, 0.5, 95))]
    chosen = g.choose(rows)
    assert chosen["dense"] == "dense a" and chosen["wide"] == "wide"
    assert chosen["paper"] == "alive" and chosen["paper_rule"] == "level and alive"
    assert chosen["departure"] is None and chosen["departure_rule"] == "none near"
    assert set(g.PICKS) <= set(chosen)  # the picks the script trains with seeds 1 and 2 and stars in its table
    # nothing alive reaches the bar: the sparsest that reaches it, said so
    rows = [r for r in rows if r["label"] not in ("alive", "alive, denser")]
    chosen = g.choose(rows)
    assert chosen["paper"] == "dead but sparse" and chosen["paper_rule"] == "level"


@pytest.mark.parametrize("dataset", ["world", "emoji"])
def test_health_tables_are_generated_from_their_json(dataset, tmp_path):
    import shutil
    from pathlib import Path

    docs = Path(__file__).resolve().parents[1] / "docs" / "sparsity"
    if not (docs / f"health_{dataset}.json").is_file():
        pytest.skip(f"docs/sparsity/health_{dataset}.json not committed yet")
    shutil.copy(docs / f"health_{dataset}.json", tmp_path)
    md = _health_script().render(tmp_path, dataset).replace(str(tmp_path), "docs/sparsity")
    assert md == (docs / f"health_{dataset}.md").read_text()
    assert (tmp_path / f"health_{dataset}.png").stat().st_size > 10_000


def test_dead_unit_push_values_and_gradient():
    """The auxiliary loss on dead units: minus the mean of each dead unit's k largest pre-activations; nothing
    for units that fire on the batch (their gradient is exactly 0)."""
    from sparseclip.loss import dead_unit_push

    pre = torch.tensor([[0.5, -1.0, -3.0],
                        [-0.2, -2.0, -0.5],
                        [-0.1, -4.0, -1.5],
                        [0.0, -0.25, -2.0]], requires_grad=True)  # unit 0 fires, units 1 and 2 are dead
    loss = dead_unit_push(pre, rate=0.5)  # k = 2 of 4 rows
    # unit 1's two largest: -0.25, -1.0; unit 2's: -0.5, -1.5 -> mean -0.8125, negated
    assert loss.item() == pytest.approx(0.8125)
    loss.backward()
    assert torch.all(pre.grad[:, 0] == 0)  # the live unit gets nothing
    assert pre.grad[3, 1] == pytest.approx(-0.25) and pre.grad[0, 1] == pytest.approx(-0.25)  # 1 / (2 units * 2)
    assert pre.grad[1, 1] == 0 and pre.grad[2, 1] == 0  # not among unit 1's top 2
    assert dead_unit_push(pre, rate=0.01).item() == pytest.approx((0.25 + 0.5) / 2)  # k is at least 1
    live = torch.tensor([[0.5, 0.01], [-1.0, -1.0]], requires_grad=True)
    out = dead_unit_push(live, rate=1.0)
    out.backward()
    assert out.item() == 0 and torch.all(live.grad == 0)
    # a code at or under tau does not count as firing
    assert dead_unit_push(torch.tensor([[1e-3, 2.0], [-1.0, 3.0]]), rate=0.5).item() == pytest.approx(-1e-3)


def test_dead_aux_keeps_units_alive_in_training_and_is_refused_for_a_dense_head(tmp_path):
    from sparseclip.data.export import import_world
    from sparseclip.train import train
    from sparseclip.train.logger import read_log

    import_world(tmp_path / "data", n_train=64, n_test=1, captions=1)
    base = ["data.kind=csv", f"data.train_data={tmp_path / 'data' / 'train.csv'}", "model.freeze_image=true",
            "model.freeze_text=true", "model.allow_random_frozen=true", "train.steps=20", "train.batch_size=32",
            "train.log_every=20", "train.lr=1e-1", "train.warmup=0", "train.tensorboard=false",
            "train.progress=false", "train.ckpt_fractions=[]"]
    unfired = {}
    for coef in (0, 1):
        run = train(load_config("micro", [*base, f"loss.dead_aux={coef}",
                                          f"train.output_dir={tmp_path / f'run{coef}'}"]))
        last = read_log(run)[-1]
        unfired[coef] = last["image_unfired_pct"] + last["text_unfired_pct"]
    assert unfired[0] > 0 and unfired[1] < unfired[0]  # a high lr kills units; the push brings them back
    with pytest.raises(ConfigError, match="loss.dead_aux"):
        train(load_config("micro", [*base, "loss.dead_aux=1", "model.head.kind=dense",
                                    f"train.output_dir={tmp_path / 'dense'}"]))
    with pytest.raises(ConfigError, match="dead_aux"):
        load_config("micro", ["loss.dead_aux=-1"])


def test_scratch_tables_are_generated_from_their_json(tmp_path):
    """docs/scratch/scratch.md is what examples/scratch_levers/run.py renders from the committed JSON; every row
    carries its L0 / firing curve, and the picks follow the dictionary-health rule on the select split."""
    import shutil
    from pathlib import Path

    docs = Path(__file__).resolve().parents[1] / "docs" / "scratch"
    if not (docs / "scratch.json").is_file():
        pytest.skip("docs/scratch/scratch.json not committed yet")
    shutil.copy(docs / "scratch.json", tmp_path)
    g = _health_script("scratch_levers")
    md = g.render(tmp_path).replace(str(tmp_path), "docs/scratch")
    assert md == (docs / "scratch.md").read_text()
    assert (tmp_path / "scratch.png").stat().st_size > 10_000
    data = json.loads((docs / "scratch.json").read_text())
    assert data["chosen"] == g.health.choose(data["rows"])
    for r in data["rows"]:
        steps = [p["step"] for p in r["curve"]]
        assert steps == sorted(steps) and steps[-1] == int(next(
            (o.split("=")[1] for o in r["overrides"] if o.startswith("train.steps=")), 200))
        assert all(0 <= p["image_l0_pct"] <= 100 for p in r["curve"])
