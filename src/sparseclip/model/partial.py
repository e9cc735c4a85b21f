"""Fine-tune only the last blocks of each tower (``train.tower_last_blocks``); everything before them is frozen.

A tower's *blocks* are its longest list of same-type modules (OpenCLIP ViT and text ``resblocks``, a BERT's
``encoder.layer``, a timm EfficientNet's ``blocks`` stages). With ``n`` > 0, a tower trains the parameters of its
last ``n`` blocks and those registered after the block list (final norms, a timm ``conv_head``), never its
embeddings; every module whose parameters are all frozen stays in eval mode at every forward (batch-norm
statistics and dropout fixed), as a frozen tower does.
"""

from __future__ import annotations

from torch import nn


class TowerBlocksError(ValueError):
    """A tower has no block list to fine-tune, or fewer blocks than asked for."""


def find_blocks(module: nn.Module) -> tuple[str, nn.Module] | None:
    """``(name, list)`` of the longest ``ModuleList``/``Sequential`` of same-type modules under ``module``."""
    best: tuple[str, nn.Module] | None = None
    for name, mod in module.named_modules():
        if isinstance(mod, nn.ModuleList | nn.Sequential) and len(mod) > 1 and len({type(c) for c in mod}) == 1:
            if best is None or len(mod) > len(best[1]):
                best = (name, mod)
    return best


def _eval_hook(module: nn.Module, args: tuple) -> None:
    module.eval()


def _tower_parts(towers: nn.Module) -> dict[str, tuple[nn.Module, list[tuple[str, nn.Parameter]]]]:
    """Per side, the module to search for blocks and the tower's named parameters in registration order."""
    visual = towers.visual
    if hasattr(towers, "text"):  # OpenCLIP CustomTextCLIP (Hugging Face text towers)
        text_root: nn.Module = towers.text
        text_params = list(towers.text.named_parameters())
    else:  # OpenCLIP CLIP: the text tower's modules sit on the model itself
        text_root = towers.transformer
        text_params = [(n, p) for n, p in towers.named_parameters() if not n.startswith("visual.")]
    return {"image": (visual, list(visual.named_parameters())), "text": (text_root, text_params)}


def train_last_blocks(towers: nn.Module, n: int) -> dict[str, dict]:
    """Freeze each tower but its last ``n`` blocks (see the module docstring); returns, per side, the block list's
    name, its length and the number of trainable parameters."""
    if n < 1:
        raise ValueError(f"train.tower_last_blocks: must be >= 1 here, got {n}")
    report = {}
    for side, (root, named) in _tower_parts(towers).items():
        found = find_blocks(root)
        if found is None:
            raise TowerBlocksError(f"train.tower_last_blocks: the {side} tower has no list of blocks to fine-tune")
        name, blocks = found
        if n > len(blocks):
            raise TowerBlocksError(f"train.tower_last_blocks={n}: the {side} tower has only {len(blocks)} blocks "
                                   f"({name})")
        keep = {id(p) for b in list(blocks)[-n:] for p in b.parameters()}
        in_blocks = {id(p) for p in blocks.parameters()}
        last = max(i for i, (_, p) in enumerate(named) if id(p) in in_blocks)
        keep |= {id(p) for i, (pname, p) in enumerate(named) if i > last and "embed" not in pname}
        trainable = 0
        for _, p in named:
            p.requires_grad_(id(p) in keep)
            trainable += p.numel() if id(p) in keep else 0
        modules = [towers.visual] if side == "image" else [m for m in towers.children() if m is not towers.visual]
        for top in modules:
            for m in top.modules():
                params = list(m.parameters())
                if params and not any(p.requires_grad for p in params):
                    m.eval()
                    m.register_forward_pre_hook(_eval_hook)
        report[side] = {"blocks": name, "n_blocks": len(blocks), "trainable_params": trainable}
    return report
