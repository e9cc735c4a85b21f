import math

import pytest
import torch

from sparseclip import load_config
from sparseclip.model import create_model, get_tokenizer, rep_relu
from sparseclip.model.heads import HEADS, create_head


def _model(*overrides):
    torch.manual_seed(0)
    return create_model(load_config("micro", list(overrides)).model)


def _batch(n=4):
    torch.manual_seed(1)
    tok = get_tokenizer(load_config("micro").model)
    return torch.randn(n, 3, 32, 32), tok(["a red circle", "two shapes: a blue star and a green square",
                                           "a small yellow cross", "a star"][:n])


#: micro's code width and sign per head kind; a newly registered kind fails here until it is added
EXPECTED = {"relu": (512, True), "dense": (64, False), "linear_wide": (512, False), "topk": (512, True)}


@pytest.mark.parametrize("kind", HEADS.names())  # every registered head kind
@pytest.mark.parametrize("placement", ["replace", "append"])
def test_head_shapes_and_sign(kind, placement):
    dim, nonneg = EXPECTED[kind]
    m = _model(f"model.head.kind={kind}", f"model.head.placement={placement}", "model.head.topk=7")
    x, t = _batch()
    img, txt = m.encode_image(x), m.encode_text(t)
    assert img.shape == (4, dim) and txt.shape == (4, dim) and m.code_dim == dim
    if nonneg:
        assert (img >= 0).all() and (txt >= 0).all()
    else:
        assert (img < 0).any()
    if kind == "topk":
        assert ((img > 0).sum(1) <= 7).all()
    out = m(x, t)
    assert torch.allclose(out["image_features"].norm(dim=-1), torch.ones(4), atol=1e-5)
    assert set(out) >= {"image_features", "text_features", "logit_scale"}
    assert torch.allclose(m.encode_image(x, normalize=True), out["image_features"], atol=1e-6)


def test_placement_changes_head_input():
    rep, app = _model("model.head.placement=replace"), _model("model.head.placement=append")
    assert rep.visual.proj is None and rep.image_head.in_dim == 64
    assert app.visual.proj is not None and app.image_head.in_dim == 64  # micro: width == embed_dim
    wide = create_model(load_config("micro", ["model.embed_dim=32"]).model)
    assert wide.image_head.in_dim == 64 and wide.image_head.out_dim == 8 * 32
    appended = create_model(load_config("micro", ["model.embed_dim=32", "model.head.placement=append"]).model)
    assert appended.image_head.in_dim == 32


def test_dense_append_is_plain_clip_projection():
    m = _model("model.head.kind=dense", "model.head.placement=append")
    assert isinstance(m.image_head.proj, torch.nn.Identity)
    x, t = _batch()
    assert torch.allclose(m.encode_image(x), m.towers.encode_image(x), atol=1e-6)


def test_logit_scale_init_and_cap():
    m = _model("model.logit_scale_max=50")
    assert math.isclose(float(m.logit_scale.detach()), math.log(1 / 0.07), rel_tol=1e-6)
    with torch.no_grad():
        m.logit_scale.fill_(10.0)
    m.clamp_logit_scale()
    assert math.isclose(float(m.logit_scale.exp().detach()), 50.0, rel_tol=1e-5)
    capped = _model("model.logit_scale_max=5")  # a cap below the init clamps immediately
    assert float(capped.logit_scale.exp().detach()) <= 5.0 + 1e-5


def test_rep_relu_forward_relu_backward_gelu():
    x = torch.tensor([-2.0, -0.5, 0.5, 2.0], requires_grad=True)
    y = rep_relu(x)
    assert torch.equal(y.detach(), torch.relu(x.detach()))
    y.sum().backward()
    xg = x.detach().clone().requires_grad_(True)
    torch.nn.functional.gelu(xg).sum().backward()
    assert torch.allclose(x.grad, xg.grad)
    assert x.grad[0] != 0  # a "dead" input still gets a gradient


def test_relu_head_gradients_flow_only_through_active_units():
    torch.manual_seed(0)
    h = create_head("relu", 8, 32)
    x = torch.randn(5, 8) - 1.0
    z = h(x)
    z.sum().backward()
    dead = (z > 0).sum(0) == 0
    assert dead.any()  # with 32 random units and 5 inputs some never fire
    assert (h.proj.weight.grad[dead] == 0).all() and (h.proj.weight.grad[~dead] != 0).any(1).all()


def test_no_tower_logit_scale_duplicate():
    m = _model()
    names = [n for n, _ in m.named_parameters() if "logit_scale" in n]
    assert names == ["logit_scale"]
