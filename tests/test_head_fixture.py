"""A head kind of one's own, in this one file: a JumpReLU head (a learned threshold per unit, Rajamanoharan et al.
2024), registered from the test, trains, resumes, saves, loads, evaluates through the CLI and is searched,
with nothing else in the project changed."""

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file

from sparseclip import load_config
from sparseclip.cli import main
from sparseclip.config import ConfigError, HeadConfig
from sparseclip.model.checkpoint import load_model
from sparseclip.model.heads import HEADS, Head
from sparseclip.train import train


class _Jump(torch.autograd.Function):
    """``z * (z > theta)``; the threshold's gradient through a rectangle kernel of width ``bw`` (the paper's
    straight-through estimator)."""

    @staticmethod
    def forward(ctx, z, theta, bw):  # type: ignore[override]
        ctx.save_for_backward(z, theta)
        ctx.bw = bw
        return z * (z > theta)

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        z, theta = ctx.saved_tensors
        near = ((z - theta).abs() < ctx.bw / 2).to(grad.dtype)
        g_theta = -(theta / ctx.bw) * near * grad
        return grad * (z > theta), g_theta.reshape(-1, theta.shape[-1]).sum(0), None


class JumpReLUHead(Head):
    nonnegative, wide, label = True, True, "JumpReLU head"

    def __init__(self, cfg: HeadConfig, in_dim: int, out_dim: int, identity: bool = False):
        super().__init__(cfg, in_dim, out_dim, identity)
        init = float(cfg.options.get("threshold", 0.01))
        self.log_threshold = torch.nn.Parameter(torch.full((out_dim,), init).log())
        self.bandwidth = float(cfg.options.get("bandwidth", 0.01))

    @classmethod
    def check_config(cls, cfg: HeadConfig) -> None:
        unknown = set(cfg.options) - {"threshold", "bandwidth"}
        if unknown:
            raise ConfigError(f"model.head.options: the jumprelu head takes threshold and bandwidth, got "
                              f"{', '.join(sorted(unknown))}")
        if float(cfg.options.get("threshold", 0.01)) <= 0:
            raise ConfigError("model.head.options.threshold: must be > 0")

    def activate(self, z: torch.Tensor) -> torch.Tensor:
        return _Jump.apply(torch.relu(z), self.log_threshold.exp(), self.bandwidth)


@pytest.fixture
def jumprelu():
    HEADS.register("jumprelu", JumpReLUHead)
    yield "jumprelu"
    HEADS.unregister("jumprelu")


def _cfg(tmp_path, name, *extra):
    return load_config("micro", [f"train.output_dir={tmp_path / name}", "train.tensorboard=false",
                                 "train.progress=false", "train.steps=6", "train.log_every=1", "train.ckpt_every=3",
                                 "train.batch_size=16", "data.num_val=24", "data.num_probe_train=24",
                                 "model.head.kind=jumprelu", "model.head.options.threshold=0.05", *extra])


def test_jumprelu_head_trains_resumes_evaluates_and_is_searched(jumprelu, tmp_path, capsys):
    run = train(_cfg(tmp_path, "jr"))
    model, cfg = load_model(run)
    head = model.image_head
    assert isinstance(head, JumpReLUHead) and cfg.model.head.options == {"threshold": 0.05}
    assert not torch.allclose(head.log_threshold.exp(), torch.full_like(head.log_threshold, 0.05)), \
        "the threshold is a trained parameter"
    x = torch.randn(5, 3, 32, 32)
    with torch.no_grad():
        code = model.encode_image(x)
    theta = head.log_threshold.exp()
    assert (code >= 0).all() and ((code == 0) | (code > theta)).all(), "every kept value clears its threshold"

    # resume from the step-3 checkpoint continues exactly (the threshold is in the checkpoint)
    again = train(_cfg(tmp_path, "jr2"))
    shutil.rmtree(again / "final")
    shutil.rmtree(again / "checkpoints" / "step_000006", ignore_errors=True)
    train(_cfg(tmp_path, "jr2"), resume="latest")
    a, b = load_file(str(run / "final" / "model.safetensors")), load_file(str(again / "final" / "model.safetensors"))
    assert torch.equal(a["image_head.log_threshold"], b["image_head.log_threshold"])

    # evaluated through the CLI like a shipped kind
    assert main(["eval", str(run), "--out", str(tmp_path / "eval.json"), "--no-probe"]) == 0
    res = json.loads((tmp_path / "eval.json").read_text())
    assert 0 <= res["zeroshot_mean_acc1"] <= 1 and res["sparsity"]["image"]["L0"] > 0

    # and searched: an index built from the run answers a text query, through the library and the CLI
    from sparseclip.index.build import BuildOptions, build_index_from_run
    from sparseclip.index.query import search_index

    built = build_index_from_run(run, tmp_path / "ix", BuildOptions(n=40))
    found = search_index(built.index, text="a red circle", k=3)
    assert len(found.hits) == 3 and all(h.score >= 0 for h in found.hits)
    assert main(["index", "search", str(tmp_path / "ix"), "--text", "a red circle", "-k", "3"]) == 0


def test_jumprelu_options_are_validated_by_the_kind(jumprelu):
    with pytest.raises(ConfigError, match="model.head.options: the jumprelu head takes threshold"):
        load_config("micro", ["model.head.kind=jumprelu", "model.head.options.gain=2"])
    with pytest.raises(ConfigError, match="model.head.options: the relu head takes no options"):
        load_config("micro", ["model.head.options.threshold=0.1"])


def test_unregistered_kind_is_one_clear_error():
    with pytest.raises(ConfigError, match="model.head.kind: must be one of relu, dense, linear_wide, topk"):
        load_config("micro", ["model.head.kind=jumprelu"])
