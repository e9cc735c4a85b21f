"""The data formats (registry :data:`DATA_FORMATS`, selected by ``data.kind``) and the one training-data
interface the trainer uses, whatever the format.

``build_train_source(cfg, tokenizer, transform, rank, world_size)`` returns a :class:`TrainSource`:

- ``batches(start_step, batch_size)`` yields ``(images, tokens)`` for steps ``start_step, start_step+1, ...``
  forever. ``batch_size`` is the per-rank batch; with ``world_size`` ranks the global batch at step ``s`` is
  the concatenation, in rank order, of the ranks' batches and equals the single-process batch of size
  ``batch_size * world_size`` at step ``s``. Batches are a pure function of (data, seed, step), so a resumed
  run continues exactly (webdataset shards: it skips forward deterministically to the shard in which the
  step falls, see :mod:`sparseclip.data.wds`).
- ``stats()`` returns counts: ``seen`` (samples delivered), ``attempted`` and ``skipped`` by reason
  (``missing_file``, ``bad_image``, ``empty_caption``, ``bad_shard``, ...).

Bad samples are skipped and counted, never fatal on their own; once at least ``data.bad_min_samples`` samples
were attempted and the skipped fraction exceeds ``data.max_bad_fraction``, :class:`DataError` stops the run
with a one-line message.

A format is one :class:`DataFormat` entry that builds its training source and declares what it can do: whether
``data.train_data`` is required, whether its training pairs can be listed (then frozen towers train on cached
features of them), and whether it reads a file of pairs given as ``--data`` (eval, analyze, index). Nothing
outside an entry compares format names. A finite file format is a :class:`FileFormat` with one method, its
reader; a new one::

    class JsonlFormat(FileFormat):
        suffixes = (".jsonl",)

        def read(self, path, cfg, label_keys=(), option="--data") -> PairRows: ...

    DATA_FORMATS.register("jsonl", JsonlFormat())

Shipped: ``world`` (procedural, built in), ``csv`` (:mod:`sparseclip.data.csv_data`), ``wds`` (webdataset
shards, :mod:`sparseclip.data.wds`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, ClassVar, NamedTuple

import torch
from PIL import Image

from ..config import Config, DataConfig
from ..registry import Registry
from .base import Batch, DataError, EpochPermutation, StepSource, Tokenizer, TrainSource, Transform
from .csv_data import read_csv
from .pairs import PairRows, PairSet, PairSource, collect_pairs
from .wds import WdsSource


class WorldSource(StepSource):
    """The procedural world: step ``s`` of rank ``r`` on ``W`` ranks takes global positions
    ``(s*W + r)*B ... + B - 1``; position ``p`` is scene ``p`` of ``World(train_seed)`` (an endless stream), or
    with ``data.num_train = n`` scene ``EpochPermutation(n, train_seed)(p)`` (a finite pool read epoch by
    epoch, as a CSV is)."""

    def __init__(self, cfg: DataConfig, tokenizer: Tokenizer, transform: Transform, rank: int = 0,
                 world_size: int = 1):
        from .world import World

        super().__init__(cfg, rank, world_size)
        self.world = World(seed=cfg.train_seed, image_size=cfg.image_size, max_objects=cfg.max_objects)
        self.tokenizer, self.transform = tokenizer, transform
        self.pool = EpochPermutation(cfg.num_train, cfg.train_seed) if cfg.num_train else None

    def make_batch(self, step: int, batch_size: int) -> Batch:
        images, captions = [], []
        positions = self.global_indices(step, batch_size)
        for i in (self.pool.rows(positions).tolist() if self.pool else positions):
            img, cap, _ = self.world.sample(i)
            images.append(self.transform(img))
            captions.append(cap)
        return Batch(torch.stack(images), self.tokenizer(captions), attempted=batch_size)


class WorldImages(Sequence):
    """The world's images ``0..n-1``, drawn on access (a cache key needs only their type: ``key_token``)."""

    key_token = "<Image>"

    def __init__(self, world: Any, n: int):
        self.world, self.n = world, n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> Image.Image:  # type: ignore[override]
        if not 0 <= i < self.n:
            raise IndexError(i)
        return self.world.render(self.world.scene(i), i)


class TrainPairs(NamedTuple):
    """A finite training set listed: images (paths or PIL images, possibly drawn lazily), captions in the same
    order, and ``key``, what else identifies the images (a cache of their features is reused only under the
    same key)."""

    images: Sequence[str | Image.Image]
    captions: list[str]
    key: str = ""


class DataFormat:
    """A ``data.kind`` entry: builds its training source and declares what it can do.

    The source's protocol is :class:`~sparseclip.data.base.TrainSource` (``batches``, ``stats``). Finite
    formats build a :class:`~sparseclip.data.base.StepSource`, whose batch is a pure function of the step;
    a stream (webdataset shards, :class:`~sparseclip.data.wds.WdsSource`) cannot be one without reading every
    shard up to the step, so it implements ``batches`` itself, reproducibly per rank and worker count, and
    resumes at shard granularity.
    """

    #: whether ``data.train_data`` is required, and what it is (for the config's message)
    needs_path: ClassVar[bool] = True
    path_help: ClassVar[str] = "the training data"
    #: whether :meth:`read` reads a file of pairs (``eval --data``, ``analyze --data``, the SAEs' training rows)
    reads_files: ClassVar[bool] = False
    #: file suffixes (lower case, with the dot) that ``--data PATH`` reads with this format
    suffixes: ClassVar[tuple[str, ...]] = ()
    #: read a ``--data`` file no entry claims by its suffix (one entry: the CSV reader)
    reads_any_file: ClassVar[bool] = False

    def source(self, cfg: DataConfig, tokenizer: Tokenizer, transform: Transform, rank: int = 0,
               world_size: int = 1) -> TrainSource:
        """The training source of ``cfg`` for ``rank`` of ``world_size``."""
        raise NotImplementedError

    def finite(self, cfg: DataConfig) -> bool:
        """Whether :meth:`train_pairs` lists the training set of ``cfg`` (then frozen towers can train on cached
        features, ``train.feature_cache``); a stream is not."""
        return False

    def train_pairs(self, cfg: DataConfig) -> TrainPairs:
        """The training set of ``cfg``, listed (only when :meth:`finite`), in row order: the rows a
        :class:`~sparseclip.data.base.EpochPermutation` of the source reads."""
        raise DataError(f"data.kind: a {type(self).__name__} cannot list its training pairs")

    def read(self, path: str | Path, cfg: DataConfig, label_keys: tuple[str, ...] = (),
             option: str = "--data") -> PairRows:
        """The rows of the file ``path`` (only when :attr:`reads_files`); messages start with ``option``."""
        raise DataError(f"{option}: a {type(self).__name__} does not read files of pairs")

    def pairs(self, path: str | Path, cfg: DataConfig, *, option: str = "--data",
              label_keys: tuple[str, ...] | list[str] = (), limit: int = 0,
              encode: Callable[[list], Any] | None = None, chunk: int = 256, shrink_to: int = 0) -> PairSet:
        """The pairs of the file ``path`` for evaluation and analysis (see
        :func:`~sparseclip.data.pairs.collect_pairs`)."""
        label_keys = tuple(dict.fromkeys(label_keys))
        return collect_pairs(self.read(path, cfg, label_keys, option), label_keys, limit=limit, encode=encode,
                             chunk=chunk, shrink_to=shrink_to, option=option)


class FileFormat(DataFormat):
    """A finite format read from one file: a subclass implements :meth:`read`; it trains through
    :class:`~sparseclip.data.pairs.PairSource`, its training pairs can be cached, and ``--data`` reads it."""

    reads_files = True
    path_help = "a data file"

    def source(self, cfg: DataConfig, tokenizer: Tokenizer, transform: Transform, rank: int = 0,
               world_size: int = 1) -> TrainSource:
        rows = self.read(cfg.train_data, cfg, (), "data.train_data")
        return PairSource(cfg, rows, tokenizer, transform, rank, world_size)

    def finite(self, cfg: DataConfig) -> bool:
        return True

    def train_pairs(self, cfg: DataConfig) -> TrainPairs:
        rows = self.read(cfg.train_data, cfg, (), "data.train_data")
        return TrainPairs(rows.images, rows.captions)


#: ``data.kind`` -> its :class:`DataFormat` entry. The config's validation, the trainer, its feature cache and
#: the readers of ``--data`` ask the entry.
DATA_FORMATS: Registry[DataFormat] = Registry("data format", "data.kind")


class WorldFormat(DataFormat):
    """The procedural world; finite (cacheable) with ``data.num_train``."""

    needs_path = False

    def source(self, cfg: DataConfig, tokenizer: Tokenizer, transform: Transform, rank: int = 0,
               world_size: int = 1) -> TrainSource:
        return WorldSource(cfg, tokenizer, transform, rank, world_size)

    def finite(self, cfg: DataConfig) -> bool:
        return cfg.num_train > 0

    def train_pairs(self, cfg: DataConfig) -> TrainPairs:
        from .world import World

        world = World(seed=cfg.train_seed, image_size=cfg.image_size, max_objects=cfg.max_objects)
        return TrainPairs(WorldImages(world, cfg.num_train),  # drawn when encoded, not all held at once
                          [world.scene(i).caption for i in range(cfg.num_train)],
                          f"world:{cfg.train_seed}:{cfg.image_size}:{cfg.max_objects}:{cfg.num_train}")


class CsvFormat(FileFormat):
    """A CSV/TSV file of image paths and captions (:func:`~sparseclip.data.csv_data.read_csv`)."""

    path_help = "a CSV file"
    suffixes = (".csv", ".tsv")
    reads_any_file = True

    def read(self, path: str | Path, cfg: DataConfig, label_keys: tuple[str, ...] = (),
             option: str = "--data") -> PairRows:
        return read_csv(path, cfg.csv_img_key, cfg.csv_caption_key, cfg.csv_separator, label_keys, option)


class WdsFormat(DataFormat):
    """Webdataset shards: a stream (not cacheable, not read as ``--data``)."""

    path_help = "shard patterns"

    def source(self, cfg: DataConfig, tokenizer: Tokenizer, transform: Transform, rank: int = 0,
               world_size: int = 1) -> TrainSource:
        return WdsSource(cfg, tokenizer, transform, rank, world_size)


DATA_FORMATS.register("world", WorldFormat())
DATA_FORMATS.register("csv", CsvFormat())
DATA_FORMATS.register("wds", WdsFormat())


def build_train_source(cfg: Config, tokenizer: Tokenizer, transform: Transform, rank: int = 0,
                       world_size: int = 1) -> TrainSource:
    """The training data of ``cfg.data`` for ``rank`` of ``world_size`` (see the module docstring)."""
    return DATA_FORMATS.get(cfg.data.kind).source(cfg.data, tokenizer, transform, rank, world_size)


def file_format(path: str | Path, kind: str = "") -> DataFormat:
    """The entry that reads the file ``path`` given as ``--data``: the one whose :attr:`~DataFormat.suffixes`
    claim its suffix, else the format ``kind`` (the run's ``data.kind``) if it reads files, else the CSV
    reader."""
    suffix = Path(path).suffix.lower()
    entries = [entry for _, entry in DATA_FORMATS.items() if entry.reads_files]
    claimed = [e for e in entries if suffix in e.suffixes]
    if claimed:
        return claimed[0]
    if kind in DATA_FORMATS and DATA_FORMATS.get(kind).reads_files:
        return DATA_FORMATS.get(kind)
    return next(e for e in entries if e.reads_any_file)


def read_data_pairs(path: str | Path, cfg: DataConfig | None = None, *, option: str = "--data",
                    label_keys: tuple[str, ...] | list[str] = (), limit: int = 0,
                    encode: Callable[[list], Any] | None = None, chunk: int = 256, shrink_to: int = 0,
                    **columns: str) -> PairSet:
    """The user's pairs in the file ``path`` (``eval --data``, ``analyze --data``, ``index build --data``),
    read by :func:`file_format`'s entry with the settings of ``cfg`` (default: the defaults), ``columns``
    (``csv_img_key=...``, ``csv_caption_key=...``, ``csv_separator=...``) overriding them; see
    :meth:`DataFormat.pairs`."""
    cfg = replace(cfg or DataConfig(), **columns)
    return file_format(path, cfg.kind).pairs(path, cfg, option=option, label_keys=label_keys, limit=limit,
                                             encode=encode, chunk=chunk, shrink_to=shrink_to)


__all__ = ["DATA_FORMATS", "DataFormat", "FileFormat", "TrainPairs", "WorldImages", "WorldSource",
           "build_train_source", "file_format", "read_data_pairs"]
