"""Building an index from a trained run: images (procedural world, a folder, or a CSV) embedded by the run's
model into sparse codes, stored as a :class:`SparseIndex` (ranked by the search backend chosen, default local).

>>> result = build_index_from_run("runs/shapes", "runs/index", BuildOptions(n=2000))
>>> result.index, result.n_new, result.mean_active
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import scipy.sparse as sp
from PIL import Image

from ..files.lock import FolderLock
from ..model.rundir import RunDir
from .backends import backend_class
from .codes import SparseIndexError
from .sparse_index import META_FILE, SparseIndex


@dataclass
class BuildOptions:
    """What :func:`build_index_from_run` indexes and how (``sparseclip index build``'s options).

    Images: ``images_dir`` (every image below it), ``data`` (a CSV of image-caption pairs, each image once with
    its first caption; its columns ``img_key`` / ``caption_key``, default the run's) or else ``n`` procedural
    world scenes from ``start`` (default 0, or the index size when appending) with ``seed`` (default the
    config's ``data.val_seed``). ``append`` adds them to the index at ``out``. Feature names come from
    ``feature_names`` or the run's ``analysis/feature_names.json`` / ``features.json``. ``backend``: the search
    backend that ranks (a name in ``index.backends.BACKENDS``; None: local for a new index, the index's own when
    appending) with its build parameters ``backend_options`` (e.g. milvus: ``uri``, ``collection``).
    """

    images_dir: str | Path | None = None
    data: str | Path | None = None
    img_key: str | None = None
    caption_key: str | None = None
    n: int = 1000
    seed: int | None = None
    start: int | None = None
    append: bool = False
    feature_names: str | Path | None = None
    normalize: bool = True
    batch_size: int = 256
    backend: str | None = None
    backend_options: dict[str, Any] = field(default_factory=dict)

    def check(self) -> None:
        """One :class:`SparseIndexError` line for a value that cannot work (before any image is embedded)."""
        if self.n < 1 or self.batch_size < 1:
            raise SparseIndexError("n and batch_size must be >= 1")
        if self.backend is not None:
            backend_class(self.backend).check(**self.backend_options)
        elif self.backend_options:
            raise SparseIndexError(f"backend options {sorted(self.backend_options)} need a backend")


@dataclass
class BuildResult:
    """What :func:`build_index_from_run` did: the saved index and the new items' facts."""

    index: SparseIndex
    out: Path
    n_new: int
    mean_active: float
    seconds: float
    skipped: dict[str, int] = field(default_factory=dict)

    def summary(self) -> str:
        """One line: what was indexed, where, how large, how long (what ``sparseclip index build`` prints)."""
        extra = f"; skipped {self.skipped}" if self.skipped else ""
        ranked = self.index.ranked_by()
        via = f"; {ranked}" if ranked else ""
        return (f"indexed {self.n_new} images (mean {self.mean_active:.1f} active of {self.index.n_features} "
                f"features) -> {self.out} [{len(self.index)} items, {self.index.nbytes / 1e6:.1f} MB] in "
                f"{self.seconds:.1f} s{extra}{via}")


def load_feature_names(path: str | Path | None) -> dict[int, str]:
    """Names from ``{"id": "name"}`` or from an analysis ``features.json`` (``{"features": [{id, name}]}``)."""
    if path is None:
        return {}
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise SparseIndexError(f"feature names {path}: cannot read JSON ({e})") from None
    if isinstance(data, dict) and isinstance(data.get("features"), list):
        return {int(f["id"]): str(f["name"]) for f in data["features"] if f.get("name")}
    if isinstance(data, dict):
        try:
            return {int(k): str(v) for k, v in data.items()}
        except ValueError:
            pass
    raise SparseIndexError(f"feature names {path}: expected {{\"id\": \"name\"}} or an analysis features.json")


def world_items(cfg, n: int, seed: int, start: int) -> Iterator[tuple[str, str, Image.Image]]:
    """``n`` procedural world scenes from ``start``: ``(id, caption, image)``."""
    from ..data.world import World

    world = World(seed=seed, image_size=cfg.data.image_size, max_objects=cfg.data.max_objects)
    for i in range(start, start + n):
        scene = world.scene(i)
        yield f"world:{seed}:{i}", scene.caption, world.render(scene, i)


def folder_items(root: Path, skipped: Counter) -> Iterator[tuple[str, None, Image.Image]]:
    """Every readable image under ``root`` (recursively, sorted); unreadable ones are counted in ``skipped``."""
    from ..data.base import SkipSample, open_rgb
    from ..data.folder import IMAGE_SUFFIXES

    if not root.is_dir():
        raise SparseIndexError(f"images dir {root}: not a directory")
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise SparseIndexError(f"images dir {root}: no images ({', '.join(IMAGE_SUFFIXES)})")
    for path in files:
        try:
            img = open_rgb(path)
        except SkipSample as e:  # unreadable: skipped and counted
            skipped[e.reason] += 1
            continue
        yield str(path), None, img


def csv_codes(path: Path, model, cfg, batch_size: int, skipped: Counter, img_key: str | None = None,
              caption_key: str | None = None) -> tuple[sp.csr_matrix, list[str], list[str]]:
    """(codes CSR, ids, first caption of each) of a data file's images (a CSV, or any registered format that
    reads files: :func:`~sparseclip.data.sources.read_data_pairs` with the run's data settings), encoded in
    chunks as they are read; a CSV's columns are ``img_key`` / ``caption_key`` (default: the run's)."""
    from ..data.sources import read_data_pairs
    from ..model.embed import encode_images
    from .codes import as_csr

    pairs = read_data_pairs(path, cfg.data, csv_img_key=img_key or cfg.data.csv_img_key,
                            csv_caption_key=caption_key or cfg.data.csv_caption_key,
                            encode=lambda ims: as_csr(encode_images(model, ims, cfg.data.image_size, batch_size)),
                            chunk=batch_size)
    skipped.update(pairs.skipped)
    first: dict[int, str] = {}
    for cap, i in zip(pairs.captions, pairs.caption_image, strict=True):
        first.setdefault(i, cap)
    return pairs.codes, list(pairs.ids), [first.get(i, "") for i in range(len(pairs.ids))]


def build_index_from_run(checkpoint: str | Path, out: str | Path, options: BuildOptions | None = None, *,
                         model: tuple | None = None) -> BuildResult:
    """Embed images with the model of ``checkpoint`` (a run or checkpoint dir) and save their codes as an index
    at ``out`` (or add them to it with ``options.append``), under an exclusive lock on ``out``; what is indexed
    and how: :class:`BuildOptions`.

    ``model``: the ``(model, config)`` of ``checkpoint`` when the caller has it loaded already. ``append`` is
    refused unless the model is the one the index was built with (same weights, else same checkpoint path).
    """
    options = options or BuildOptions()
    options.check()
    with _IndexLock(out, "index build", beside=True):
        return _build(Path(checkpoint), Path(out), options, loaded=model)


class _IndexLock(FolderLock):
    """The index folder's lock (``.INDEX.lock`` beside it), removed when released: a finished build leaves no
    lock file behind. The file is unlinked while still held, and a lock taken on a file that was unlinked
    meanwhile (opened just before another holder removed it) is dropped and taken again on the new file."""

    def acquire(self) -> _IndexLock:
        for _ in range(100):
            super().acquire()
            try:
                same = os.path.samestat(os.fstat(self._fd), os.stat(self.path))  # type: ignore[arg-type]
            except FileNotFoundError:
                same = False
            if same:
                return self
            super().release()
        raise SparseIndexError(f"{self.path}: the lock file keeps being replaced; try again")

    def release(self) -> None:
        if self._fd is not None:
            self.path.unlink(missing_ok=True)
        super().release()


def model_record(ckpt: Path, model, cfg) -> dict:
    """What ``index.json`` records about the model: its checkpoint dir, a SHA-256 of its weights (what an
    ``--append`` is checked against) and its config."""
    from ..model.checkpoint import tensors_digest

    state = model.state_dict()
    return {"checkpoint": str(ckpt.resolve()), "weights_sha256": tensors_digest(state, list(state)),
            "config": cfg.to_dict()}


def check_same_model(out: Path, recorded: dict | None, now: dict) -> None:
    """Refuse to append codes of another model to an index (one line): the weights' fingerprints must agree
    when both are recorded, else the resolved checkpoint paths."""
    recorded = recorded or {}
    old_sha, old_ckpt = recorded.get("weights_sha256"), recorded.get("checkpoint")
    if old_sha and old_sha == now["weights_sha256"]:
        return
    same_path = old_ckpt is not None and Path(old_ckpt).resolve() == Path(now["checkpoint"])
    if old_sha is None and same_path:
        return
    why = "its weights have changed since the index was built" if same_path \
        else f"the index was built with {old_ckpt or 'an unrecorded model'}"
    raise SparseIndexError(f"{out}: cannot --append codes of {now['checkpoint']}: {why}; codes of different models "
                           "are not comparable; build a new index (another --out) for this model")


def _build(checkpoint: Path, out: Path, o: BuildOptions, loaded: tuple | None) -> BuildResult:
    from ..model.checkpoint import load_model, resolve_checkpoint
    from .embedding import encode_items

    t0 = time.time()
    ckpt = resolve_checkpoint(checkpoint)
    model, cfg = loaded if loaded is not None else load_model(ckpt)
    if not model.image_head.nonnegative:
        raise SparseIndexError(f"{checkpoint}: head kind {cfg.model.head.kind!r} is not non-negative; "
                               "sparse search needs a relu or topk head")
    index = SparseIndex.load(out) if o.append else None
    if index is None and (out / META_FILE).exists():
        raise SparseIndexError(f"{out} already holds an index: pass --append to add to it, or choose another --out")
    if index is not None and index.n_features != model.code_dim:
        raise SparseIndexError(f"{out}: index has {index.n_features} features, the model's code has {model.code_dim}")
    record = model_record(ckpt, model, cfg)
    if index is not None:
        check_same_model(out, index.model, record)
    skipped: Counter = Counter()
    if o.data is not None:
        codes, ids, captions = csv_codes(Path(o.data), model, cfg, o.batch_size, skipped, o.img_key, o.caption_key)
    else:
        if o.images_dir is not None:
            items = folder_items(Path(o.images_dir), skipped)
        else:
            seed = cfg.data.val_seed if o.seed is None else o.seed
            first = o.start if o.start is not None else (len(index) if index is not None else 0)
            items = world_items(cfg, o.n, seed, first)
        codes, ids, captions = encode_items(model, items, cfg.data.image_size, o.batch_size)
    if not ids:
        raise SparseIndexError("no image could be read; nothing indexed")
    captions = captions if any(c for c in captions) else None
    if index is None:
        names_path = Path(o.feature_names) if o.feature_names else None
        for found in ("feature_names.json", "features.json"):  # every named feature, else the detailed few
            if names_path is None and (RunDir.of(ckpt).analysis / found).is_file():
                names_path = RunDir.of(ckpt).analysis / found
        index = SparseIndex.build(codes, ids, normalize=o.normalize, captions=captions,
                                  feature_names=load_feature_names(names_path),
                                  model=record)
        concepts = RunDir.of(ckpt).analysis / "feature_concepts.json"  # written by analyze on labelled data
        if concepts.is_file():
            index.feature_concepts = load_feature_names(concepts)
    else:
        index.append(codes, ids, captions)
        if o.feature_names:
            index.feature_names.update(load_feature_names(o.feature_names))
    if o.backend is not None and (o.backend != index.backend or o.backend_options):  # else: the index's own kept
        index.use_backend(o.backend, **o.backend_options)
    index.save(out)
    return BuildResult(index=index, out=out, n_new=len(ids), mean_active=codes.nnz / max(codes.shape[0], 1),
                       seconds=time.time() - t0, skipped=dict(skipped))
