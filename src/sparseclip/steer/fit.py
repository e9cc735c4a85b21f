"""Building the adapter VLM: codes of the world's training images, LM pre-training, then the paper's two stages.

Stage 0 (only for the tiny default LM): the LM learns the world's language on question/answer texts alone.
Stage 1: adapter only (CLIP tower and LM frozen). Stage 2: adapter + LM. The CLIP tower is frozen throughout,
so the images' codes are computed once and cached.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from ..data.world import World
from ..model import SparseCLIP, image_transform
from ..model.embed import encode_images
from .text import HFTokenizer, WordTokenizer, qa_pairs
from .vlm import AdapterVLM, VLMConfig, load_lm, tiny_lm


@dataclass
class VLMTrainConfig:
    """Sizes and schedule of VLM training (defaults: a few minutes on a laptop CPU)."""

    n_images: int = 3000
    lm_steps: int = 800
    stage1_steps: int = 800
    stage2_steps: int = 800
    batch_size: int = 64
    lr_lm: float = 2e-3
    lr_adapter: float = 1e-3
    lr_stage2: float = 3e-4
    n_prefix: int = 4
    hidden: int = 256
    patch_tokens: bool = False
    n_layer: int = 2
    n_embd: int = 128
    seed: int = 0


@torch.no_grad()
def patch_codes(model: SparseCLIP, images, image_size: int, batch_size: int = 256) -> torch.Tensor:
    """(N, T, D) codes of each image's patch tokens, passed through the image head (native OpenCLIP ViT only)."""
    visual = model.visual
    if not hasattr(visual, "output_tokens"):
        raise ValueError("patch tokens need a native OpenCLIP ViT image tower")
    tf = image_transform(image_size, train=False, cfg=getattr(model, "cfg", None))
    dev = next(model.parameters()).device
    out = []
    old = visual.output_tokens
    visual.output_tokens = True
    try:
        for i in range(0, len(images), batch_size):
            x = torch.stack([tf(im.convert("RGB")) for im in images[i:i + batch_size]]).to(dev)
            _, tokens = visual(x)
            out.append(model.image_head(tokens).float().cpu())
    finally:
        visual.output_tokens = old
    return torch.cat(out)


def image_codes(model: SparseCLIP, images, image_size: int, patches: bool = False
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(pooled codes (N, D), patch codes (N, T, D) or None)."""
    codes = encode_images(model, images, image_size)
    return codes, (patch_codes(model, images, image_size) if patches else None)


def training_scenes(n: int, seed: int, image_size: int):
    """``n`` training scenes with their images: half one-object scenes, half with 1-3 objects."""
    single = World(seed=seed, image_size=image_size, max_objects=1)
    multi = World(seed=seed + 7919, image_size=image_size)
    scenes, images = [], []
    for i in range(n):
        w = single if i % 2 == 0 else multi
        s = w.scene(i)
        scenes.append(s)
        images.append(w.render(s, i))
    return scenes, images


def _examples(scenes, tok) -> list[tuple[int, list[int], list[int]]]:
    out = []
    for i, s in enumerate(scenes):
        for q, a in qa_pairs(s):
            out.append((i, tok.prompt_ids(q), tok.encode(a) + [tok.eos_id]))
    return out


def _run(vlm: AdapterVLM, params: list[nn.Parameter], lr: float, steps: int, batch: int, examples,
         codes: torch.Tensor | None, pcodes: torch.Tensor | None, rng: random.Random, name: str,
         log: Callable[[str], None] | None) -> float:
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    warm = max(1, min(50, steps // 10))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / warm) * max(0.05, 1 - s / steps))
    ema = float("nan")
    for step in range(steps):
        ex = [examples[rng.randrange(len(examples))] for _ in range(batch)]
        idx = torch.tensor([e[0] for e in ex])
        c = codes[idx] if codes is not None else None
        p = pcodes[idx] if pcodes is not None and codes is not None else None
        loss = vlm.loss(c, [e[1] for e in ex], [e[2] for e in ex], patch_codes=p)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        ema = loss.item() if ema != ema else 0.95 * ema + 0.05 * loss.item()
        if log and (step + 1) % max(1, steps // 4) == 0:
            log(f"{name}: step {step + 1}/{steps} loss {ema:.3f}")
    return ema


def train_vlm(model: SparseCLIP, image_size: int, tcfg: VLMTrainConfig, lm_dir: str | None = None,
              clip_name: str = "", log: Callable[[str], None] | None = None) -> tuple[AdapterVLM, dict]:
    """Train an adapter VLM on ``model``'s codes of the world's training images.

    ``lm_dir``: a local Hugging Face causal LM (and its tokenizer) to use instead of the tiny default; it
    skips stage 0. Returns the VLM (eval mode) and a summary dict (losses, seconds).
    """
    t0 = time.time()
    rng = random.Random(tcfg.seed)
    torch.manual_seed(tcfg.seed)
    model.eval()
    scenes, images = training_scenes(tcfg.n_images, tcfg.seed, image_size)
    codes, pcodes = image_codes(model, images, image_size, patches=tcfg.patch_tokens)
    scale = float(codes.norm(dim=-1).mean().clamp_min(1e-6))
    if lm_dir:
        tok: WordTokenizer | HFTokenizer = HFTokenizer(lm_dir)
        lm = load_lm(lm_dir)
    else:
        tok = WordTokenizer.for_world()
        lm = tiny_lm(len(tok), n_layer=tcfg.n_layer, n_embd=tcfg.n_embd, seed=tcfg.seed)
    cfg = VLMConfig(code_dim=codes.shape[1], n_prefix=tcfg.n_prefix, hidden=tcfg.hidden, code_scale=scale,
                    patch_tokens=tcfg.patch_tokens, tokenizer="hf" if lm_dir else "word", clip=clip_name,
                    head_kind=model.image_head.kind)
    vlm = AdapterVLM(cfg, lm, tok)
    vlm.train()
    examples = _examples(scenes, tok)
    summary: dict = {"n_images": len(images), "n_examples": len(examples), "code_scale": scale}
    if not lm_dir:
        summary["lm_loss"] = _run(vlm, list(vlm.lm.parameters()), tcfg.lr_lm, tcfg.lm_steps, tcfg.batch_size,
                                  examples, None, None, rng, "stage 0 (LM on text)", log)
    for p in vlm.lm.parameters():
        p.requires_grad_(False)
    adapter_params = [p for n, p in vlm.named_parameters() if not n.startswith("lm.")]
    summary["stage1_loss"] = _run(vlm, adapter_params, tcfg.lr_adapter, tcfg.stage1_steps, tcfg.batch_size,
                                  examples, codes, pcodes, rng, "stage 1 (adapter)", log)
    for p in vlm.lm.parameters():
        p.requires_grad_(True)
    summary["stage2_loss"] = _run(vlm, list(vlm.parameters()), tcfg.lr_stage2, tcfg.stage2_steps,
                                  tcfg.batch_size, examples, codes, pcodes, rng, "stage 2 (adapter + LM)", log)
    summary["seconds"] = round(time.time() - t0, 1)
    return vlm.eval(), summary
