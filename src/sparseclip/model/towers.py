"""Build image and text towers with OpenCLIP, load local weights, freeze, and detach final projections.

Anything OpenCLIP builds works as a tower:

- a named OpenCLIP config (``model.openclip_name: ViT-B-32``);
- inline configs: OpenCLIP's native ViT / text transformer, a timm image tower
  (``vision_cfg: {timm_model_name: efficientnet_lite0, timm_pool: avg, timm_proj: linear}``) or a Hugging Face
  text tower from a local directory (``text_cfg: {hf_model_name: /path/to/dir, hf_tokenizer_name: /path/to/dir,
  hf_pooler_type: mean_pooler, hf_proj_type: linear}``; a text tower that is not OpenCLIP's own makes the
  towers an OpenCLIP ``CustomTextCLIP``).

Initial weights come from a local OpenCLIP-layout checkpoint (``model.pretrained``: ``.safetensors``, or a
``.bin``/``.pt``/``.pth`` read with ``torch.load(weights_only=True)``, never unpickled). ``model.freeze_image``
and ``model.freeze_text`` freeze a tower LiT-style: no gradients, and it stays in eval mode (batch-norm
statistics and dropout fixed) even when the model is put in training mode.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import open_clip
import torch
from torch import nn

from ..config import _CKPT_SUFFIXES, ModelConfig


class TowerError(ValueError):
    """A tower cannot be built, loaded or adapted as asked (one line)."""


def build_towers(cfg: ModelConfig) -> nn.Module:
    """An OpenCLIP ``CLIP``/``CustomTextCLIP`` (named or inline config, or a named pair ``cfg.towers``), with
    its pretrained weights loaded and the towers frozen as ``cfg.freeze_image`` / ``cfg.freeze_text`` say."""
    from .pretrained import load_pair_weights, resolve_towers

    cfg, pair_paths = resolve_towers(cfg)
    pretrained = cfg.pretrained
    tag = pretrained if pretrained and cfg.openclip_name and not pretrained.endswith(_CKPT_SUFFIXES) else ""
    weights = cached_tag_file(cfg.openclip_name, tag) if tag else pretrained  # an unavailable tag: one line, first
    if cfg.openclip_name:
        model = _openclip_named(cfg.openclip_name)
    elif cfg.text_cfg.get("hf_model_name") or cfg.text_cfg.get("custom_text"):
        text_cfg = {k: v for k, v in cfg.text_cfg.items() if k != "custom_text"}
        model = open_clip.model.CustomTextCLIP(cfg.embed_dim, dict(cfg.vision_cfg), text_cfg)
    else:
        model = open_clip.model.CLIP(cfg.embed_dim, dict(cfg.vision_cfg), dict(cfg.text_cfg))
    # The wrapper owns logit_scale; drop the tower's own so it is not trained or saved twice.
    for name in ("logit_scale", "logit_bias"):
        if hasattr(model, name):
            delattr(model, name)
    replace = cfg.head.placement == "replace"
    before = set(model.state_dict())
    if replace:  # the head replaces the towers' projections: drop them now, their weights are not needed
        strip_projections(model, remove=True)
    if pair_paths:
        load_pair_weights(model, cfg, pair_paths, ignore=before - set(model.state_dict()))
    elif weights:
        load_tower_weights(model, weights, ignore=before - set(model.state_dict()))
    freeze_towers(model, image=getattr(cfg, "freeze_image", False), text=getattr(cfg, "freeze_text", False))
    return model


class _DropMessage:
    """A logging filter that drops records containing ``text``."""

    def __init__(self, text: str):
        self.text = text

    def filter(self, record) -> bool:
        return self.text not in record.getMessage()


def weights_summary(cfg: ModelConfig) -> str:
    """Which tower weights a config loads, in words: the file (for an OpenCLIP tag, its cached file) and its
    SHA-256 prefix; "" when none."""
    if not cfg.pretrained:
        return ""
    tag = cfg.pretrained if cfg.openclip_name and not cfg.pretrained.endswith(_CKPT_SUFFIXES) else ""
    path = cached_tag_file(cfg.openclip_name, tag) if tag else Path(cfg.pretrained)
    if not path.is_file():
        raise TowerError(f"model.pretrained: no such file: {path}")
    import hashlib

    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return f"{f'OpenCLIP {tag!r}: ' if tag else ''}{path} (sha256 {h.hexdigest()[:12]})"


def cached_tag_file(name: str, tag: str) -> Path:
    """The local file of OpenCLIP pretrained ``tag`` of model ``name``: from the Hugging Face cache (OpenCLIP's
    hub copy, its ``.safetensors`` first) or OpenCLIP's URL cache (``~/.cache/clip``). Nothing is downloaded:
    an unknown or uncached tag is one line."""
    import os

    from open_clip.pretrained import get_pretrained_cfg, list_pretrained_tags_by_model

    pcfg = get_pretrained_cfg(name, tag)
    if not pcfg:
        known = ", ".join(list_pretrained_tags_by_model(name)) or "none"
        raise TowerError(f"model.pretrained={tag}: not an OpenCLIP pretrained tag of {name} (its tags: {known}); "
                         "or give a local weights file")
    if pcfg.get("file"):
        return Path(pcfg["file"])
    if pcfg.get("hf_hub"):
        from huggingface_hub import try_to_load_from_cache

        repo, filename = os.path.split(pcfg["hf_hub"])
        filename = filename or "open_clip_pytorch_model.bin"
        safe = {"open_clip_pytorch_model.bin": "open_clip_model.safetensors"}.get(filename)  # as OpenCLIP looks
        if safe is None and filename.endswith((".bin", ".pth")):
            safe = filename[:-4] + ".safetensors"
        for candidate in [safe, filename] if safe else [filename]:
            found = try_to_load_from_cache(repo, candidate)
            if isinstance(found, str):
                return Path(found)
    if pcfg.get("url"):
        found = Path(os.path.expanduser("~/.cache/clip")) / os.path.basename(pcfg["url"])
        if found.is_file():
            return found
    raise TowerError(f"model.pretrained={tag}: {name} weights {tag!r} are not in the local OpenCLIP / Hugging Face "
                     "cache (nothing is downloaded); give a local weights file instead")


def _openclip_named(name: str) -> nn.Module:
    """OpenCLIP's named architecture, randomly initialised: the weights are loaded from ``model.pretrained``
    afterwards, so OpenCLIP's "No pretrained weights loaded ... initialized randomly" warning is untrue and
    dropped."""
    import logging

    quiet = _DropMessage("No pretrained weights loaded")
    logging.getLogger().addFilter(quiet)
    try:
        return open_clip.create_model(name, pretrained=None)
    finally:
        logging.getLogger().removeFilter(quiet)


# ----------------------------------------------------------------------------------------------
# weights


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors of a local checkpoint: safetensors, or a torch file loaded with ``weights_only=True``.

    Unwraps OpenCLIP training checkpoints (``{"state_dict": ...}``) and DDP's ``module.`` prefix.
    """
    path = Path(path)
    if path.suffix not in _CKPT_SUFFIXES:
        raise TowerError(f"model.pretrained: {path} must be one of {', '.join(_CKPT_SUFFIXES)}")
    if not path.is_file():
        raise TowerError(f"model.pretrained: no such file: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            sd = load_file(str(path))
        except Exception as e:  # noqa: BLE001 - not a safetensors file (e.g. a pickle renamed), or truncated
            raise TowerError(f"model.pretrained: {path} is not a readable safetensors file "
                             f"({type(e).__name__}); it is never unpickled") from None
    else:
        try:
            sd = torch.load(str(path), map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001 - any unpickling refusal or corruption becomes one line
            raise TowerError(f"model.pretrained: cannot read {path} safely ({type(e).__name__})") from None
    if isinstance(sd, dict) and isinstance(sd.get("state_dict"), dict):
        sd = sd["state_dict"]
    if not isinstance(sd, dict):
        raise TowerError(f"model.pretrained: {path} holds no state dict")
    sd = {k: v for k, v in sd.items() if isinstance(v, torch.Tensor)}
    if sd and all(k.startswith("module.") for k in sd):
        sd = {k[len("module."):]: v for k, v in sd.items()}
    return sd


def load_tower_weights(model: nn.Module, path: str | Path, ignore: set[str] | frozenset = frozenset()) -> None:
    """Load an OpenCLIP-layout checkpoint into the towers; every tower tensor must be present with its shape.

    The checkpoint's ``logit_scale``/``logit_bias`` and the ``ignore`` keys (projections the head replaces)
    are ignored: they may be present or not.
    """
    sd = read_state_dict(path)
    sd = {k: v for k, v in sd.items() if k not in ("logit_scale", "logit_bias") and k not in ignore}
    own = model.state_dict()
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    wrong = [k for k in own if k in sd and tuple(sd[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or wrong:
        parts = []
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)):
            if keys:
                parts.append(f"{len(keys)} {label} (e.g. {', '.join(keys[:3])})")
        raise TowerError(f"model.pretrained: {path} does not match the towers: {'; '.join(parts)}")
    model.load_state_dict(sd, strict=True)


def remap_by_order(source: dict[str, torch.Tensor], target: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename ``source``'s tensors to ``target``'s keys, pairing them in order (same count and shapes needed).

    For weights saved by another implementation of the same network (e.g. EfficientNet-Lite0's original
    release and timm's ``efficientnet_lite0``).
    """
    if len(source) != len(target):
        raise TowerError(f"cannot pair weights by order: {len(source)} tensors vs {len(target)}")
    out = {}
    for (sk, sv), (tk, tv) in zip(source.items(), target.items(), strict=True):
        if tuple(sv.shape) != tuple(tv.shape):
            raise TowerError(f"cannot pair weights by order: {sk} {tuple(sv.shape)} vs {tk} {tuple(tv.shape)}")
        out[tk] = sv
    return out


# ----------------------------------------------------------------------------------------------
# freezing


def _force_eval(module: nn.Module, args: tuple) -> None:
    """Forward pre-hook of a frozen tower: run it in eval mode whatever ``.train()`` was called with."""
    if module.training:
        module.eval()


def _lock(module: nn.Module) -> None:
    """No gradients, and eval mode at every forward (batch-norm statistics and dropout stay fixed)."""
    module.requires_grad_(False)
    module.eval()
    module.register_forward_pre_hook(_force_eval)


def text_modules(model: nn.Module) -> list[nn.Module]:
    """The modules that make up the text tower (OpenCLIP's ``CLIP`` keeps them on the model itself)."""
    if hasattr(model, "text"):
        return [model.text]
    return [m for m in (getattr(model, n, None) for n in ("token_embedding", "transformer", "ln_final"))
            if isinstance(m, nn.Module)]


def text_parameters(model: nn.Module) -> Iterator[nn.Parameter]:
    """Every parameter of the text tower (including ``CLIP``'s loose ``positional_embedding`` and
    ``text_projection``)."""
    for m in text_modules(model):
        yield from m.parameters()
    if not hasattr(model, "text"):
        for n in ("positional_embedding", "text_projection"):
            p = getattr(model, n, None)
            if isinstance(p, nn.Parameter):
                yield p
            elif isinstance(p, nn.Linear):
                yield from p.parameters()


def freeze_towers(model: nn.Module, image: bool = False, text: bool = False) -> None:
    """Freeze the image and/or text tower (LiT style): no gradients, kept in eval mode."""
    if image:
        _lock(model.visual)
    if text:
        for m in text_modules(model):
            _lock(m)
        for p in text_parameters(model):
            p.requires_grad_(False)


# ----------------------------------------------------------------------------------------------
# projections


def _linear_dims(proj: nn.Module | torch.Tensor) -> tuple[int, int]:
    if isinstance(proj, nn.Linear):
        return proj.in_features, proj.out_features
    if isinstance(proj, torch.Tensor) and proj.ndim == 2:
        return int(proj.shape[0]), int(proj.shape[1])
    raise TowerError(f"unsupported projection {type(proj).__name__}")


def _strip_image(visual: nn.Module, remove: bool) -> int:
    """Width of the image tower's output; with ``remove``, drop its final projection first."""
    if hasattr(visual, "trunk"):  # OpenCLIP's TimmModel: projection in head.proj / head.mlp or the classifier
        head = visual.head
        if "pool" in head._modules:
            raise TowerError("timm towers with attention pooling end in a projection that cannot be removed; "
                             "use model.head.placement=append")
        if "proj" in head._modules:
            d_in, d_out = _linear_dims(head.proj)
            if remove:
                head.proj = nn.Identity()
            return d_in if remove else d_out
        if "mlp" in head._modules:
            d_in, d_out = head.mlp.fc1.in_features, head.mlp.fc2.out_features
            if remove:
                head.mlp = nn.Identity()
            return d_in if remove else d_out
        trunk = visual.trunk
        if remove and trunk.get_classifier() is not None and not isinstance(trunk.get_classifier(), nn.Identity):
            trunk.reset_classifier(0)
        return trunk.num_features if remove or trunk.num_classes == 0 else trunk.num_classes
    proj = getattr(visual, "proj", None)
    if proj is None:
        raise TowerError(f"this image tower ({type(visual).__name__}) has no removable projection; "
                         "use model.head.placement=append")
    d_in, d_out = _linear_dims(proj)
    if remove:
        visual.proj = None
    return d_in if remove else d_out


def _strip_text(model: nn.Module, remove: bool) -> int:
    """Width of the text tower's output; with ``remove``, drop its final projection first."""
    text = getattr(model, "text", None)
    if text is not None and hasattr(text, "transformer") and hasattr(text, "pooler"):  # HFTextEncoder
        proj = text.proj
        if isinstance(proj, nn.Identity):
            return int(text.output_dim)
        if isinstance(proj, nn.Linear):
            d_in, d_out = _linear_dims(proj)
        elif isinstance(proj, nn.Sequential):
            d_in, d_out = proj[0].in_features, proj[-1].out_features
        else:
            raise TowerError(f"unsupported Hugging Face text projection {type(proj).__name__}; "
                             "use model.head.placement=append")
        if remove:
            text.proj = nn.Identity()
        return d_in if remove else d_out
    owner = text if text is not None else model
    proj = getattr(owner, "text_projection", None)
    if proj is None:
        raise TowerError("this text tower has no 'text_projection' to remove; use model.head.placement=append")
    d_in, d_out = _linear_dims(proj)
    if remove:
        owner.text_projection = None
    return d_in if remove else d_out


def strip_projections(model: nn.Module, remove: bool) -> tuple[int, int]:
    """Return (image_dim, text_dim) of the towers' outputs; with ``remove`` drop their final projections.

    Supports OpenCLIP's native ViT (``visual.proj``) and text transformer (``text_projection``), timm image
    towers (``visual.head.proj``/``mlp`` or the timm classifier) and Hugging Face text towers (``text.proj``).
    Towers whose projection cannot be removed (ResNet attention pooling) raise :class:`TowerError`.
    Removing twice is harmless: the widths found the first time are returned again.
    """
    done = getattr(model, "_stripped_dims", None)
    if done is not None:
        return done
    dims = _strip_image(model.visual, remove), _strip_text(model, remove)
    if remove:
        object.__setattr__(model, "_stripped_dims", dims)
    return dims


# ----------------------------------------------------------------------------------------------
# tokenizer


def tower_tokenizer(cfg: ModelConfig, context_length: int | None = None):
    """The tokenizer that matches the text tower: OpenCLIP's for named/native towers, the Hugging Face
    tokenizer from the local ``text_cfg.hf_tokenizer_name`` directory for HF towers."""
    from .pretrained import resolve_towers

    cfg, _ = resolve_towers(cfg)
    hf = cfg.text_cfg.get("hf_tokenizer_name") or cfg.text_cfg.get("hf_model_name")
    if hf and not cfg.openclip_name:
        ctx = context_length or cfg.text_cfg.get("context_length", 77)
        return open_clip.tokenizer.HFTokenizer(hf, context_length=ctx)
    if cfg.openclip_name:
        return open_clip.get_tokenizer(cfg.openclip_name, context_length=context_length)
    ctx = context_length or cfg.text_cfg.get("context_length", 77)
    return open_clip.tokenizer.SimpleTokenizer(context_length=ctx)
