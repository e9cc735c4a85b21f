"""The adapter VLM: Sparse CLIP code -> 2-layer MLP adapter -> prefix embeddings of a causal language model.

The language model is any Hugging Face causal LM (``AutoModelForCausalLM``) read from a local directory
(Llama-class at scale); the CPU default is a small GPT-2-style model (:func:`tiny_lm`) trained here on the
procedural world's language. The image enters as ``n_prefix`` embeddings computed from the (pooled) code and,
optionally, one embedding per image patch computed from the patch tokens passed through the same head.
Codes are divided by a fixed ``code_scale`` (their mean L2 norm on the training images) before the adapter,
a linear rescaling, so an edit of the code is the same edit of the adapter input.

A VLM directory holds ``vlm.json`` (this config), ``adapter.safetensors``, ``lm/`` (``save_pretrained``,
safetensors) and ``tokenizer.json`` (the word tokenizer; or the Hugging Face tokenizer inside ``lm/``).
"""

from __future__ import annotations

import inspect
import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

from ..files.atomic import save_safetensors, write_text_atomic
from .text import HFTokenizer, SteerError, WordTokenizer

VLM_CONFIG = "vlm.json"
ADAPTER = "adapter.safetensors"
LM_DIR = "lm"
TOKENIZER = "tokenizer.json"


@dataclass
class VLMConfig:
    """Shape of the adapter and where the codes come from."""

    code_dim: int
    n_prefix: int = 4
    hidden: int = 256
    code_scale: float = 1.0
    patch_tokens: bool = False
    tokenizer: str = "word"  # "word" (tokenizer.json) or "hf" (inside lm/)
    clip: str = ""  # the CLIP checkpoint/run the codes come from (informational)
    head_kind: str = ""  # "relu" (sparse), "dense", ...

    @classmethod
    def from_dict(cls, data: dict) -> VLMConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise SteerError(f"{VLM_CONFIG}: unknown fields {sorted(unknown)}")
        return cls(**data)


def tiny_lm(vocab_size: int, n_layer: int = 2, n_embd: int = 128, n_head: int = 4, n_positions: int = 128,
            seed: int = 0) -> nn.Module:
    """A small randomly initialised GPT-2-style causal LM (no downloads)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    cfg = GPT2Config(vocab_size=vocab_size, n_positions=n_positions, n_embd=n_embd, n_layer=n_layer,
                     n_head=n_head, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=1,
                     eos_token_id=2, pad_token_id=0)
    return GPT2LMHeadModel(cfg)


def load_lm(directory: str | Path) -> nn.Module:
    """A Hugging Face causal LM from a local directory (never downloads)."""
    from transformers import AutoModelForCausalLM

    if not Path(directory).is_dir():
        raise SteerError(f"no language model directory at {directory}")
    try:
        return AutoModelForCausalLM.from_pretrained(str(directory), local_files_only=True, use_safetensors=True)
    except (OSError, ValueError) as e:
        raise SteerError(f"{directory}: cannot load a causal LM ({str(e).splitlines()[0]})") from None


class Adapter(nn.Module):
    """2-layer MLP: code (B, D) -> ``n_out`` embeddings (B, n_out, d_model)."""

    def __init__(self, code_dim: int, hidden: int, d_model: int, n_out: int):
        super().__init__()
        self.n_out, self.d_model = n_out, d_model
        self.fc1 = nn.Linear(code_dim, hidden)
        self.fc2 = nn.Linear(hidden, n_out * d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.fc2(F.gelu(self.fc1(x)))
        return y.view(*x.shape[:-1], self.n_out, self.d_model)


class AdapterVLM(nn.Module):
    """Codes -> adapter prefix -> causal LM. ``loss`` for training, ``generate`` for greedy answers."""

    def __init__(self, cfg: VLMConfig, lm: nn.Module, tokenizer: WordTokenizer | HFTokenizer):
        super().__init__()
        self.cfg, self.lm, self.tokenizer = cfg, lm, tokenizer
        d = lm.get_input_embeddings().embedding_dim
        self.adapter = Adapter(cfg.code_dim, cfg.hidden, d, cfg.n_prefix)
        self.patch_adapter = Adapter(cfg.code_dim, cfg.hidden, d, 1) if cfg.patch_tokens else None

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def prefix(self, codes: torch.Tensor, patch_codes: torch.Tensor | None = None) -> torch.Tensor:
        """(B, P [+ T], d) prefix embeddings of codes (B, D) and, with ``patch_tokens``, patch codes (B, T, D)."""
        if codes.shape[-1] != self.cfg.code_dim:
            raise SteerError(f"codes have width {codes.shape[-1]}, the adapter expects {self.cfg.code_dim}")
        out = self.adapter(codes.to(self.device) / self.cfg.code_scale)
        if self.patch_adapter is not None:
            if patch_codes is None:
                raise SteerError("this VLM reads patch tokens: pass patch_codes")
            patches = self.patch_adapter(patch_codes.to(self.device) / self.cfg.code_scale).squeeze(-2)
            out = torch.cat([out, patches], dim=1)
        return out

    def _embed(self, ids: torch.Tensor) -> torch.Tensor:
        return self.lm.get_input_embeddings()(ids)

    def loss(self, codes: torch.Tensor | None, prompts: list[list[int]], answers: list[list[int]],
             patch_codes: torch.Tensor | None = None, n_prefix: int | None = None) -> torch.Tensor:
        """Mean next-token loss on the answer tokens (answers end with EOS). ``codes=None``: text only, the
        positions still start after the prefix (``n_prefix`` slots), as when pre-training the LM."""
        seqs = [p + a for p, a in zip(prompts, answers, strict=True)]
        length = max(len(s) for s in seqs)
        tok = self.tokenizer
        ids = torch.full((len(seqs), length), tok.pad_id, dtype=torch.long)
        labels = torch.full((len(seqs), length), -100, dtype=torch.long)
        mask = torch.zeros(len(seqs), length, dtype=torch.long)
        for i, (p, s) in enumerate(zip(prompts, seqs, strict=True)):
            ids[i, :len(s)] = torch.tensor(s)
            labels[i, len(p):len(s)] = torch.tensor(s[len(p):])
            mask[i, :len(s)] = 1
        dev = self.device
        ids, labels, mask = ids.to(dev), labels.to(dev), mask.to(dev)
        emb = self._embed(ids)
        if codes is not None:
            pre = self.prefix(codes, patch_codes)
            n_pre = pre.shape[1]
            emb = torch.cat([pre.to(emb.dtype), emb], dim=1)
            mask = torch.cat([torch.ones(len(seqs), n_pre, dtype=mask.dtype, device=dev), mask], dim=1)
            labels = torch.cat([torch.full((len(seqs), n_pre), -100, dtype=labels.dtype, device=dev), labels], 1)
            start = 0
        else:
            start = self.cfg.n_prefix if n_prefix is None else n_prefix
        pos = torch.arange(start, start + emb.shape[1], device=dev).expand(len(seqs), -1)
        logits = self.lm(inputs_embeds=emb, attention_mask=mask, position_ids=pos).logits
        return F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), labels[:, 1:].flatten(), ignore_index=-100)

    @torch.no_grad()
    def answer_logprob(self, codes: torch.Tensor, question: str, answer: str, batch_size: int = 256) -> torch.Tensor:
        """(B,) log-probability, teacher-forced, of the tokens of ``answer`` (no end token) after ``question``
        for each code (B, D): how strongly the VLM would give that answer, a smooth score for ranking edits."""
        tok, dev = self.tokenizer, self.device
        prompt, ans = tok.prompt_ids(question), tok.encode(answer)
        if not ans:
            raise SteerError(f"answer {answer!r} has no tokens")
        ids = torch.tensor(prompt + ans, device=dev)
        out = []
        for i in range(0, codes.shape[0], batch_size):
            c = codes[i:i + batch_size]
            emb = self._embed(ids).expand(c.shape[0], -1, -1)
            pre = self.prefix(c).to(emb.dtype)
            x = torch.cat([pre, emb], dim=1)
            pos = torch.arange(x.shape[1], device=dev).expand(c.shape[0], -1)
            logp = self.lm(inputs_embeds=x, position_ids=pos).logits.float().log_softmax(-1)
            start = pre.shape[1] + len(prompt)  # the first answer token's position
            pred = logp[:, start - 1:start - 1 + len(ans)]  # the logits that predict each answer token
            out.append(pred.gather(-1, torch.tensor(ans, device=dev).expand(c.shape[0], -1)[..., None])[..., 0].sum(1))
        return torch.cat(out).cpu()

    @torch.no_grad()
    def generate(self, codes: torch.Tensor, question: str, max_new_tokens: int = 40,
                 patch_codes: torch.Tensor | None = None, batch_size: int = 256) -> list[str]:
        """Greedy answers to ``question`` for each code (B, D)."""
        out: list[str] = []
        for i in range(0, codes.shape[0], batch_size):
            pc = patch_codes[i:i + batch_size] if patch_codes is not None else None
            out += self._generate(codes[i:i + batch_size], question, max_new_tokens, pc)
        return out

    def _generate(self, codes, question, max_new_tokens, patch_codes) -> list[str]:
        tok, dev = self.tokenizer, self.device
        b = codes.shape[0]
        prompt = torch.tensor(tok.prompt_ids(question), device=dev).expand(b, -1)
        emb = self._embed(prompt)
        pre = self.prefix(codes, patch_codes).to(emb.dtype)
        emb = torch.cat([pre, emb], dim=1)
        n = emb.shape[1]
        pos = torch.arange(n, device=dev).expand(b, -1)
        done = torch.zeros(b, dtype=torch.bool, device=dev)
        gen = []
        # transformers renamed ``past_key_values`` to ``cache`` (5.x); accept either
        cache_arg = "cache" if "cache" in inspect.signature(self.lm.forward).parameters else "past_key_values"
        past = None
        for step in range(max_new_tokens):
            res = self.lm(inputs_embeds=emb, position_ids=pos, use_cache=True, **{cache_arg: past})
            past = getattr(res, cache_arg, None)
            nxt = res.logits[:, -1].argmax(-1)
            nxt = torch.where(done, torch.full_like(nxt, tok.eos_id), nxt)
            gen.append(nxt)
            done |= nxt == tok.eos_id
            if bool(done.all()):
                break
            emb = self._embed(nxt[:, None])
            pos = torch.full((b, 1), n + step, device=dev)
        ids = torch.stack(gen, 1).tolist()
        return [tok.decode(row[:row.index(tok.eos_id)] if tok.eos_id in row else row) for row in ids]

    # -- artefacts -----------------------------------------------------------------------------------
    def save(self, directory: str | Path) -> Path:
        """Write the VLM directory (config JSON, adapter safetensors, LM via ``save_pretrained``)."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        write_text_atomic(d / VLM_CONFIG, json.dumps(asdict(self.cfg), indent=2))
        state = {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items() if not k.startswith("lm.")}
        save_safetensors(state, d / ADAPTER, metadata={"format": "pt", "library": "sparseclip"})
        self.lm.save_pretrained(str(d / LM_DIR), safe_serialization=True)
        if isinstance(self.tokenizer, HFTokenizer):
            self.tokenizer.tok.save_pretrained(str(d / LM_DIR))
        else:
            self.tokenizer.save(d / TOKENIZER)
        return d

    @classmethod
    def load(cls, directory: str | Path, device: str | torch.device = "cpu") -> AdapterVLM:
        """Load a VLM directory written by :meth:`save` (safetensors and JSON only)."""
        d = Path(directory)
        if not (d / VLM_CONFIG).is_file():
            raise SteerError(f"{directory}: not a VLM directory (no {VLM_CONFIG}); build one with "
                             "`sparseclip steer-train`")
        try:
            cfg = VLMConfig.from_dict(json.loads((d / VLM_CONFIG).read_text()))
        except (json.JSONDecodeError, TypeError) as e:
            raise SteerError(f"{d / VLM_CONFIG}: invalid ({e})") from None
        tok = HFTokenizer(d / LM_DIR) if cfg.tokenizer == "hf" else WordTokenizer.load(d / TOKENIZER)
        vlm = cls(cfg, load_lm(d / LM_DIR), tok)
        try:
            state = load_file(str(d / ADAPTER))
        except (SafetensorError, OSError) as e:
            raise SteerError(f"{d / ADAPTER}: not a readable safetensors file ({e})") from None
        missing, unexpected = vlm.load_state_dict(state, strict=False)
        missing = [k for k in missing if not k.startswith("lm.")]
        if missing or unexpected:
            raise SteerError(f"{d / ADAPTER}: does not match {VLM_CONFIG} (missing {missing[:2]}, "
                             f"unexpected {list(unexpected)[:2]})")
        return vlm.to(device).eval()
