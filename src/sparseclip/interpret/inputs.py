"""The data an analysis runs on, and one model's codes on it.

:class:`AnalysisData` is built from the procedural world: a paired validation set (images, one caption
each, ground-truth concepts), single-label zero-shot task images (for class consistency), and the naming
vocabulary (the training captions' words and n-grams, optionally WordNet and ``wordfreq`` words).
:class:`CodeSet` holds one model's codes on it, in plain numpy, so every metric treats Sparse CLIP codes,
dense embeddings and SAE codes alike.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image

from ..data.tasks import TASK_NAMES, retrieval_set, zero_shot_task
from ..data.world import CONCEPTS, World
from ._arrays import l2_normalize
from .alignment import concept_matrix
from .naming import build_vocabulary


@dataclass
class AnalysisData:
    """Everything the metrics look at (identical for every model compared)."""

    images: list[Image.Image]
    captions: list[str]  # captions[i] describes images[i]
    concepts: np.ndarray  # (N, C) bool, columns = CONCEPTS
    vocab: list[str]
    task_images: dict[str, list[Image.Image]] = field(default_factory=dict)
    task_targets: dict[str, np.ndarray] = field(default_factory=dict)
    image_size: int = 32


def training_captions(seed: int, n: int, image_size: int = 32, paraphrases: int = 2) -> list[str]:
    """Captions of the first ``n`` training scenes plus ``paraphrases`` rewordings of each."""
    world = World(seed=seed, image_size=image_size)
    caps = []
    for i in range(n):
        scene = world.scene(i)
        caps.append(scene.caption)
        caps.extend(world.captions(scene, paraphrases, i))
    return caps


def build_analysis_data(n: int = 1000, val_seed: int = 1, train_seed: int = 0, image_size: int = 32,
                        n_task: int = 100, vocab_captions: int = 2000, max_n: int = 3, wordnet: bool = False,
                        wordfreq_n: int = 0) -> AnalysisData:
    """Validation pairs (``n``), zero-shot task images (``n_task`` per task), and the naming vocabulary."""
    if n < 2:
        raise ValueError(f"n: need at least 2 validation images, got {n}")
    rs = retrieval_set(n, seed=val_seed, image_size=image_size, captions_per_image=1)
    vocab = build_vocabulary(training_captions(train_seed, vocab_captions, image_size), max_n=max_n,
                             wordnet=wordnet, wordfreq_n=wordfreq_n)
    data = AnalysisData(rs.images, rs.captions, concept_matrix(rs.labels, CONCEPTS), vocab,
                        image_size=image_size)
    for task in TASK_NAMES if n_task > 0 else ():
        t = zero_shot_task(task, n_task, seed=val_seed, image_size=image_size)
        data.task_images[task] = t.images
        data.task_targets[task] = np.asarray(t.targets)
    return data


@dataclass
class CodeSet:
    """One model's codes on an :class:`AnalysisData`.

    ``match_image`` / ``match_terms`` are the embeddings in which images are compared with vocabulary
    terms for the naming quality score (the codes themselves for a CLIP; the dense embeddings an SAE
    was trained on for an SAE). ``encode_image`` maps a preprocessed image batch to codes (heatmaps).
    """

    name: str
    image: np.ndarray  # (N, D)
    text: np.ndarray  # (N, D)
    terms: np.ndarray  # (V, D)
    tasks: dict[str, np.ndarray] = field(default_factory=dict)  # task -> (n_task, D)
    match_image: np.ndarray | None = None
    match_terms: np.ndarray | None = None
    encode_image: Callable[[torch.Tensor], torch.Tensor] | None = None
    preprocess: Callable[[Image.Image], torch.Tensor] | None = None  # PIL -> the tensor encode_image takes
    extra: dict = field(default_factory=dict)  # further numeric summary columns (e.g. an SAE's FVU)

    def __post_init__(self) -> None:
        if self.match_image is None:
            self.match_image = l2_normalize(self.image)
        if self.match_terms is None:
            self.match_terms = l2_normalize(self.terms)

    @property
    def dim(self) -> int:
        return int(self.image.shape[1])


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().float().numpy()


def encode_model(name: str, model, tokenizer, data: AnalysisData, batch_size: int = 256,
                 progress: bool = False) -> CodeSet:
    """Encode ``data`` with a (Sparse) CLIP model; its codes are the un-normalised head outputs."""
    from tqdm.auto import tqdm

    from ..embed import encode_images, encode_texts

    steps = tqdm(total=3 + len(data.task_images), desc=f"encode {name}", disable=not progress, leave=False)
    image = _np(encode_images(model, data.images, data.image_size, batch_size))
    steps.update()
    text = _np(encode_texts(model, tokenizer, data.captions, batch_size))
    steps.update()
    terms = _np(encode_texts(model, tokenizer, data.vocab, batch_size))
    steps.update()
    tasks = {}
    for task, imgs in data.task_images.items():
        tasks[task] = _np(encode_images(model, imgs, data.image_size, batch_size))
        steps.update()
    steps.close()
    from ..model import image_transform

    tf = image_transform(data.image_size, train=False, cfg=getattr(model, "cfg", None))
    return CodeSet(name, image, text, terms, tasks, encode_image=_image_encoder(model),
                   preprocess=lambda img: tf(img.convert("RGB")))


def _image_encoder(model) -> Callable[[torch.Tensor], torch.Tensor]:
    dev = next(model.parameters()).device

    @torch.no_grad()
    def encode(x: torch.Tensor) -> torch.Tensor:
        return model.encode_image(x.to(dev)).float().cpu()

    return encode


def derived_codes(name: str, base: CodeSet, encode: Callable[[torch.Tensor], torch.Tensor],
                  batch_size: int = 4096) -> CodeSet:
    """Codes of a post-hoc encoder (e.g. an SAE's ``encode``) applied to ``base``'s embeddings.

    Names are matched to images in ``base``'s embedding space (the space the encoder was trained on).
    """

    @torch.no_grad()
    def run(x: np.ndarray) -> np.ndarray:
        out = [encode(torch.as_tensor(x[i:i + batch_size], dtype=torch.float32))
               for i in range(0, x.shape[0], batch_size)]
        return np.concatenate([_np(o) for o in out]) if out else np.zeros((0, 0))

    image_enc = None
    if base.encode_image is not None:
        base_enc = base.encode_image

        def image_enc(x: torch.Tensor) -> torch.Tensor:
            return encode(base_enc(x)).float()

    return CodeSet(name, run(base.image), run(base.text), run(base.terms),
                   {t: run(c) for t, c in base.tasks.items()},
                   match_image=l2_normalize(base.image), match_terms=l2_normalize(base.terms),
                   encode_image=image_enc, preprocess=base.preprocess)


def preprocess(image: Image.Image, image_size: int) -> torch.Tensor:
    """One PIL image as the (3, H, W) tensor the image tower expects."""
    from ..model import image_transform

    return image_transform(image_size, train=False)(image.convert("RGB"))
