"""Towers from anything OpenCLIP builds: timm image towers, HF text towers from a local directory,
local checkpoints, LiT-style freezing, projection replacement. Tiny random weights, no downloads."""

import pytest
import torch
from safetensors.torch import save_file

from sparseclip.config import ConfigError, ModelConfig, load_config
from sparseclip.model import create_model
from sparseclip.model.towers import (
    TowerError,
    build_towers,
    read_state_dict,
    remap_by_order,
    strip_projections,
    tower_tokenizer,
)

transformers = pytest.importorskip("transformers", reason="transformers not installed (HF text towers)")

WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "red", "blue", "cat", "dog", "face", "smiling"]


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory):
    """A tiny random BERT (config + tokenizer files) in a local directory, as a user would have."""
    d = tmp_path_factory.mktemp("tiny_bert")
    cfg = transformers.BertConfig(vocab_size=len(WORDS), hidden_size=32, num_hidden_layers=1,
                                  num_attention_heads=2, intermediate_size=64, max_position_embeddings=64)
    cfg.save_pretrained(d)
    (d / "vocab.txt").write_text("\n".join(WORDS) + "\n")
    transformers.BertTokenizerFast(vocab_file=str(d / "vocab.txt")).save_pretrained(d)
    return d


def _cfg(hf_dir, kind="relu", placement="replace", **extra) -> ModelConfig:
    cfg = load_config("micro", [f"model.head.kind={kind}", f"model.head.placement={placement}"]).model
    cfg.vision_cfg = {"timm_model_name": "test_efficientnet", "timm_pool": "avg", "timm_proj": "linear",
                      "image_size": 32}
    cfg.text_cfg = {"hf_model_name": str(hf_dir), "hf_tokenizer_name": str(hf_dir), "hf_model_pretrained": False,
                    "hf_pooler_type": "mean_pooler", "hf_proj_type": "linear", "context_length": 16}
    for k, v in extra.items():
        setattr(cfg, k, v)
    return cfg


def test_timm_and_hf_towers_replace_projection(hf_dir):
    cfg = _cfg(hf_dir)
    model = create_model(cfg)
    towers = model.towers
    assert isinstance(towers.text.proj, torch.nn.Identity)  # HF projection replaced by the head
    assert isinstance(towers.visual.head.proj, torch.nn.Identity)  # timm projection replaced
    assert model.text_head.in_dim == 32 and model.image_head.in_dim == towers.visual.trunk.num_features
    tok = tower_tokenizer(cfg, 16)
    tokens = tok(["a red cat", "a smiling face"])
    assert tokens.shape == (2, 16) and tokens[0, 0].item() == WORDS.index("[CLS]")
    img = model.encode_image(torch.randn(2, 3, 32, 32))
    txt = model.encode_text(tokens)
    assert img.shape == txt.shape == (2, model.code_dim) and (img >= 0).all() and (txt >= 0).all()


def test_append_keeps_tower_projections(hf_dir):
    model = create_model(_cfg(hf_dir, kind="dense", placement="append"))
    assert isinstance(model.towers.visual.head.proj, torch.nn.Linear)
    assert model.code_dim == 64


def test_freeze_flags_leave_tower_grads_none(hf_dir):
    model = create_model(_cfg(hf_dir, freeze_image=True, freeze_text=True))
    model.train()
    tokens = tower_tokenizer(model.cfg, 16)(["a red cat", "a blue dog"])
    out = model(torch.randn(2, 3, 32, 32), tokens)
    (out["image_features"] @ out["text_features"].T).diagonal().sum().backward()
    tower_grads = [p.grad for p in model.towers.parameters()]
    assert tower_grads and all(g is None for g in tower_grads)
    assert model.image_head.proj.weight.grad is not None and model.text_head.proj.weight.grad is not None
    # frozen towers run in eval mode even inside model.train(): dropout off, batch-norm stats fixed
    assert not model.towers.visual.training and not model.towers.text.training
    bn_before = [b.clone() for n, b in model.towers.visual.named_buffers() if "running_mean" in n]
    model(torch.randn(2, 3, 32, 32), tokens)
    bn_after = [b for n, b in model.towers.visual.named_buffers() if "running_mean" in n]
    assert all(torch.equal(a, b) for a, b in zip(bn_before, bn_after, strict=True))


def test_freeze_native_text_tower_only():
    cfg = load_config("micro", ["model.freeze_text=true"]).model
    model = create_model(cfg)
    assert not any(p.requires_grad for p in model.towers.transformer.parameters())
    assert not model.towers.positional_embedding.requires_grad
    assert all(p.requires_grad for p in model.towers.visual.parameters())


def test_pretrained_checkpoint_roundtrip_and_mismatch(tmp_path):
    cfg = load_config("micro").model
    src = build_towers(cfg)
    sd = {k: v.contiguous() for k, v in src.state_dict().items()}
    save_file({**sd, "logit_scale": torch.tensor(4.6)}, str(tmp_path / "towers.safetensors"))
    torch.save({"state_dict": {f"module.{k}": v for k, v in sd.items()}, "epoch": 3}, tmp_path / "ckpt.pt")
    for name in ("towers.safetensors", "ckpt.pt"):
        cfg.pretrained = str(tmp_path / name)
        loaded = build_towers(cfg)
        assert torch.equal(loaded.visual.conv1.weight, src.visual.conv1.weight)
    # a full OpenCLIP checkpoint (with projections) loads into towers whose projections the head replaces
    full = build_towers(load_config("micro", ["model.head.placement=append"]).model)
    assert "visual.proj" in full.state_dict() and "visual.proj" not in sd
    save_file({k: v.contiguous() for k, v in full.state_dict().items()}, str(tmp_path / "full.safetensors"))
    cfg.pretrained = str(tmp_path / "full.safetensors")
    assert torch.equal(build_towers(cfg).visual.conv1.weight, full.visual.conv1.weight)
    save_file({k: v for k, v in sd.items() if not k.startswith("visual.")}, str(tmp_path / "text.safetensors"))
    cfg.pretrained = str(tmp_path / "text.safetensors")
    with pytest.raises(TowerError, match="missing"):
        build_towers(cfg)
    with pytest.raises(TowerError, match="no such file"):
        read_state_dict(tmp_path / "absent.safetensors")
    with pytest.raises(ConfigError, match="model.pretrained"):
        load_config("micro", ["model.pretrained=weights.ckpt"])


def test_remap_by_order_and_unremovable_projection():
    a = {"x.w": torch.zeros(2, 3), "x.b": torch.zeros(3)}
    assert list(remap_by_order(a, {"y.weight": torch.ones(2, 3), "y.bias": torch.ones(3)})) == ["y.weight", "y.bias"]
    with pytest.raises(TowerError, match="order"):
        remap_by_order(a, {"y.weight": torch.ones(3, 2), "y.bias": torch.ones(3)})
    cfg = load_config("micro").model
    cfg.vision_cfg = {"layers": [1, 1, 1, 1], "width": 16, "image_size": 32, "head_width": 16}  # ResNet
    with pytest.raises(TowerError, match="placement=append"):
        strip_projections(build_towers(cfg), remove=True)


def test_named_openclip_config_replace_and_append():
    """A named OpenCLIP config (ViT-S-32: native ViT + text transformer), projections replaced or kept."""
    cfg = load_config("micro", ["model.openclip_name=ViT-S-32", "model.embed_dim=384", "model.freeze_image=true"])
    model = create_model(cfg.model)
    assert model.towers.visual.proj is None and model.towers.text_projection is None
    assert model.image_head.in_dim == 384 and model.code_dim == 8 * 384
    assert not any(p.requires_grad for p in model.towers.visual.parameters())
    tokens = tower_tokenizer(cfg.model, 77)(["a photo of a cat"])
    assert tokens.shape == (1, 77)
    with torch.no_grad():
        assert model.encode_image(torch.randn(1, 3, 224, 224)).shape == (1, 8 * 384)
