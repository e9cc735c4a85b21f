"""Issue 41 item 3, a trainer you can read in one screen: no function in ``train/`` over 80 lines, the step loop
under 60; one schedules object for the learning rate and the logit-scale cap (its start included); the cap
logged in ``log.jsonl`` at every log step, following its schedule."""

import ast
import math
from pathlib import Path

import pytest
import torch

from sparseclip import load_config
from sparseclip.model import create_model
from sparseclip.train import train
from sparseclip.train.logger import read_log
from sparseclip.train.optim import Schedules, make_optimizer

TRAIN = Path(__file__).resolve().parents[1] / "src" / "sparseclip" / "train"
MAX_FUNCTION, MAX_STEP_LOOP = 80, 60


def _functions(path: Path) -> dict[str, int]:
    """``{qualified name: lines}`` of every function in a file (decorators and docstring included)."""
    out = {}

    def visit(node, prefix):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                start = min([child.lineno] + [d.lineno for d in child.decorator_list])
                out[f"{prefix}{child.name}"] = child.end_lineno - start + 1
                visit(child, f"{prefix}{child.name}.")
            elif isinstance(child, ast.ClassDef):
                visit(child, f"{prefix}{child.name}.")

    visit(ast.parse(path.read_text()), "")
    return out


def _too_long(folder: Path, limit: int) -> list[str]:
    return [f"{p.name}:{name} ({n} lines)" for p in sorted(folder.glob("*.py"))
            for name, n in _functions(p).items() if n > limit]


def _step_loops(path: Path) -> dict[str, int]:
    """The functions that run training steps (those calling ``accumulate_gradients`` in a loop), with their
    lengths."""
    out = {}
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.FunctionDef):
            loops = [n for n in ast.walk(node) if isinstance(n, ast.For)]
            if any(isinstance(c, ast.Call) and getattr(c.func, "id", None) == "accumulate_gradients"
                   for loop in loops for c in ast.walk(loop)):
                out[node.name] = node.end_lineno - node.lineno + 1
    return out


def test_no_function_in_the_trainer_is_over_80_lines():
    assert list(TRAIN.glob("*.py")), TRAIN
    assert _too_long(TRAIN, MAX_FUNCTION) == []


def test_the_step_loop_is_under_60_lines():
    loops = _step_loops(TRAIN / "loop.py")
    assert list(loops) == ["_run_steps"], loops  # one step loop
    assert loops["_run_steps"] < MAX_STEP_LOOP, loops


def test_the_checks_can_fail(tmp_path):
    body = "\n".join(f"    x{i} = {i}" for i in range(80))
    (tmp_path / "long.py").write_text(f"class A:\n    def f(self):\n    {body.replace(chr(10), chr(10) + '    ')}\n")
    assert _too_long(tmp_path, MAX_FUNCTION) == ["long.py:A.f (81 lines)"]
    steps = "\n".join(f"        y{i} = accumulate_gradients(i)" for i in range(60))
    (tmp_path / "loop.py").write_text(f"def run(n):\n    for i in range(n):\n{steps}\n")
    assert _step_loops(tmp_path / "loop.py") == {"run": 62}


def _cap_path(start: float, end: float, anneal: float, steps: int, done: int) -> float:
    """The cap's schedule written out: geometric from ``start`` to ``end`` over ``anneal`` of the steps."""
    return start * (end / start) ** min(1.0, done / (anneal * steps))


def test_schedules_start_the_scale_and_the_cap_in_one_place():
    torch.manual_seed(0)
    for overrides, scale, cap0 in [  # the scale at the start (exp), the cap at the start
        (["model.init_at_cap=true", "train.logit_scale_max_start=40", "model.logit_scale_max=5"], 40.0, 40.0),
        (["model.init_at_cap=true", "model.logit_scale_max=5"], 5.0, 5.0),
        (["train.logit_scale_max_start=40", "model.logit_scale_max=50"], 1 / 0.07, 40.0),
    ]:
        cfg = load_config("micro", overrides)
        model = create_model(cfg.model)
        optimizer = make_optimizer(model, cfg.train)
        sched = Schedules(cfg, optimizer)
        sched.start(model)
        assert math.exp(float(model.logit_scale.detach())) == pytest.approx(scale), overrides
        assert sched.cap_start == cap0
        assert sched.last_lr() == pytest.approx(cfg.train.lr / cfg.train.warmup)  # the warmup's first step
        with torch.no_grad():
            model.logit_scale.fill_(math.log(1000.0))
        optimizer.step()  # no gradients: nothing moves
        sched.step(model, 1)  # the lr moves on and the scale is clamped to the cap after one step
        assert sched.last_lr() == pytest.approx(cfg.train.lr * min(1.0, 2 / cfg.train.warmup))
        assert math.exp(float(model.logit_scale.detach())) == pytest.approx(sched.cap(1))


def test_the_cap_is_logged_at_each_log_step_and_follows_its_schedule(tmp_path):
    common = ["train.tensorboard=false", "train.progress=false", "train.steps=8", "train.log_every=1",
              "train.batch_size=16"]
    cfg = load_config("micro", [f"train.output_dir={tmp_path / 'sched'}", *common, "model.init_at_cap=true",
                                "model.logit_scale_max=5", "train.logit_scale_max_start=40",
                                "train.logit_scale_max_anneal=0.5"])
    recs = read_log(train(cfg))
    assert [r["step"] for r in recs] == list(range(1, 9))
    for r in recs:
        assert r["logit_scale_max"] == pytest.approx(_cap_path(40, 5, 0.5, 8, r["step"]), rel=1e-9)
        assert r["logit_scale"] <= r["logit_scale_max"] * (1 + 1e-6)
    assert recs[0]["logit_scale_max"] > 20 and recs[3]["logit_scale_max"] == pytest.approx(5)  # annealed by 4
    assert recs[0]["logit_scale"] == pytest.approx(recs[0]["logit_scale_max"], rel=1e-4)  # started at the cap
    fixed = load_config("micro", [f"train.output_dir={tmp_path / 'fixed'}", *common, "train.steps=3",
                                  "model.logit_scale_max=7"])
    assert [r["logit_scale_max"] for r in read_log(train(fixed))] == [7, 7, 7]
