"""SAE baselines: every variant learns to reconstruct, hits its sparsity, is deterministic and round-trips."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sparseclip.sae import (
    KINDS,
    SAE,
    SAEConfig,
    SAEError,
    baseline_specs,
    load_sae,
    sae_metrics,
    substitute,
    train_baselines,
    train_sae,
)

D, WIDTH, STEPS = 32, 256, 250
SPEC = {"relu": {"l1": 1e-3}, "topk": {"k": 6}, "batchtopk": {"k": 6}, "matryoshka": {"k": 6}}


def sparse_data(n: int, seed: int, offset: float, n_atoms: int = 48, active: int = 3,
                noise: float = 0.01) -> np.ndarray:
    """Embeddings that are sparse non-negative mixtures of a fixed dictionary plus a modality offset."""
    atoms = F.normalize(torch.randn(n_atoms, D, generator=torch.Generator().manual_seed(7)), dim=-1)
    g = torch.Generator().manual_seed(seed)
    idx = torch.rand(n, n_atoms, generator=g).argsort(1)[:, :active]
    coef = torch.zeros(n, n_atoms).scatter(1, idx, torch.rand(n, active, generator=g) + 0.5)
    shift = torch.zeros(D)
    shift[0] = offset
    return (coef @ atoms + shift + noise * torch.randn(n, D, generator=g)).numpy()


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Small SAEs train far faster on one thread, above all on a busy machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    return sparse_data(1200, seed=1, offset=0.8), sparse_data(1200, seed=2, offset=-0.8)


@pytest.fixture(scope="module")
def trained(data) -> dict[str, SAE]:
    x_img, x_txt = data
    return {kind: train_sae(kind, (x_img, x_txt), WIDTH, steps=STEPS, seed=0, batch_size=128, **SPEC[kind])
            for kind in KINDS}


@pytest.mark.parametrize("kind", KINDS)
def test_training_reduces_reconstruction_error(kind, data, trained):
    x = np.concatenate(data)
    sae = trained[kind]
    untrained = SAE(sae.cfg, seed=0)
    before, after = sae_metrics(untrained, x)["fvu"], sae_metrics(sae, x)["fvu"]
    assert after < 0.35, (kind, after)
    assert after < 0.5 * before, (kind, before, after)


@pytest.mark.parametrize("kind", KINDS)
def test_codes_are_non_negative_and_shaped(kind, data, trained):
    codes = trained[kind].encode(data[0][:50])
    assert codes.shape == (50, WIDTH)
    assert codes.min() >= 0
    assert trained[kind].decode(codes).shape == (50, D)


def test_topk_l0_is_exactly_k(data, trained):
    codes = trained["topk"].encode(np.concatenate(data))
    assert ((codes > 0).sum(1) == SPEC["topk"]["k"]).all()
    assert sae_metrics(trained["topk"], data[1])["L0"] == pytest.approx(SPEC["topk"]["k"])


@pytest.mark.parametrize("kind", ["batchtopk", "matryoshka"])
def test_batch_topk_mean_l0_is_k(kind, data, trained):
    k = SPEC[kind]["k"]
    l0 = sae_metrics(trained[kind], np.concatenate(data))["L0"]
    assert abs(l0 - k) < 0.25 * k, l0
    assert float(trained[kind].threshold) > 0  # calibrated, not the untrained 0


def test_relu_l1_controls_sparsity(data):
    weak = train_sae("relu", data, WIDTH, l1=1e-3, steps=200, seed=0, batch_size=128)
    strong = train_sae("relu", data, WIDTH, l1=0.3, steps=200, seed=0, batch_size=128)
    x = np.concatenate(data)
    assert sae_metrics(strong, x)["L0"] < 0.75 * sae_metrics(weak, x)["L0"]


def test_matryoshka_prefix_reconstructs_alone(data, trained):
    """The defining property: the first group of latents reconstructs better than a plain SAE's first group."""
    x = torch.as_tensor(np.concatenate(data))
    g = trained["matryoshka"].cfg.groups[0]

    def prefix_err(sae: SAE) -> float:
        codes = sae.encode(x)
        codes[:, g:] = 0
        return float((sae.prepare(x) - sae.decode(codes)).pow(2).sum(-1).mean())

    assert prefix_err(trained["matryoshka"]) < prefix_err(trained["batchtopk"])


def test_deterministic_by_seed(data):
    a = train_sae("topk", data, 64, k=4, steps=30, seed=3, batch_size=64)
    b = train_sae("topk", data, 64, k=4, steps=30, seed=3, batch_size=64)
    c = train_sae("topk", data, 64, k=4, steps=30, seed=4, batch_size=64)
    for name, t in a.state_dict().items():
        assert torch.equal(t, b.state_dict()[name]), name
    assert not torch.equal(a.W_dec, c.W_dec)


@pytest.mark.parametrize("kind", ["relu", "batchtopk", "matryoshka"])
def test_save_load_round_trip(kind, tmp_path, data, trained):
    sae = trained[kind]
    sae.save(tmp_path / kind)
    meta = json.loads((tmp_path / kind / "sae.json").read_text())
    assert meta["config"]["kind"] == kind and meta["train"]["steps"] == STEPS
    back = load_sae(tmp_path / kind)
    assert back.cfg == sae.cfg
    assert torch.equal(back.threshold, sae.threshold)
    assert torch.equal(back.encode(data[0][:100]), sae.encode(data[0][:100]))


def test_load_errors_are_one_line(tmp_path, trained):
    with pytest.raises(SAEError, match="not an SAE directory"):
        load_sae(tmp_path)
    trained["topk"].save(tmp_path / "s")
    (tmp_path / "s" / "sae.json").write_text("{not json")
    with pytest.raises(SAEError, match="not a valid SAE config"):
        load_sae(tmp_path / "s")


def test_config_validation():
    with pytest.raises(SAEError, match="unknown SAE kind"):
        SAEConfig(kind="jump", d=4, width=8, k=2)
    with pytest.raises(SAEError, match="needs 1 <= k"):
        SAEConfig(kind="topk", d=4, width=8)
    with pytest.raises(SAEError, match="needs l1"):
        SAEConfig(kind="relu", d=4, width=8)
    with pytest.raises(SAEError, match="groups"):
        SAEConfig(kind="matryoshka", d=4, width=8, k=2, groups=[4, 2, 8])
    with pytest.raises(SAEError, match="dims"):
        SAE(SAEConfig(kind="topk", d=4, width=8, k=2)).encode(np.zeros((3, 5)))


def test_substitute_zero_shot(data, trained):
    """Classes are dictionary atoms; images are noisy mixtures dominated by their class atom."""
    atoms = F.normalize(torch.randn(48, D, generator=torch.Generator().manual_seed(7)), dim=-1)
    g = torch.Generator().manual_seed(5)
    shift = torch.zeros(D)
    shift[0] = 0.8  # the modality offset the SAEs were trained with (+ images, - texts)
    classes = atoms[:6] - shift
    targets = torch.arange(120) % 6
    images = atoms[targets] * 1.2 + 0.4 * atoms[6 + torch.randint(40, (120,), generator=g)] + shift
    dense = substitute(None, images, classes, targets)
    manual = (F.normalize(images, dim=-1) @ F.normalize(classes, dim=-1).T).argmax(1)
    assert dense == pytest.approx(float((manual == targets).float().mean()))
    acc = substitute(trained["topk"], images, classes, targets)
    assert 0.0 <= acc <= 1.0 and acc >= dense - 0.2
    # per-class prompt embeddings (C, P, d): each prompt is reconstructed, then averaged
    prompts = torch.stack([classes, classes * 1.1], dim=1)
    assert substitute(trained["topk"], images, prompts, targets, which="text") >= dense - 0.2
    with pytest.raises(SAEError, match="which"):
        substitute(trained["topk"], images, classes, targets, which="neither")
    with pytest.raises(SAEError, match="targets"):
        substitute(None, images, classes, targets[:10])


def test_baseline_suite(data):
    specs = baseline_specs(ks=(4, 8), batch_k=6)
    assert [s["kind"] for s in specs] == ["relu", "topk", "topk", "batchtopk", "matryoshka"]
    saes = train_baselines(*data, width=64, ks=(4, 8), batch_k=6, steps=5, batch_size=32)
    assert list(saes) == ["sae-relu-l1=0.05", "sae-topk-k4", "sae-topk-k8", "sae-batchtopk-k6",
                          "sae-matryoshka-k6"]
    assert all(s.encode(data[0][:5]).shape == (5, 64) for s in saes.values())
