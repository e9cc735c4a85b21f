"""One training-data interface for the trainer, whatever the data format.

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

Kinds (``data.kind``): ``world`` (procedural, built in), ``csv`` (:mod:`sparseclip.data.csv_data`), ``wds``
(webdataset shards, :mod:`sparseclip.data.wds`).
"""

from __future__ import annotations

import torch

from ..config import Config, DataConfig
from .base import Batch, DataError, EpochPermutation, StepSource, Tokenizer, TrainSource, Transform
from .csv_data import CsvSource
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


#: ``data.kind`` -> the source class (constructor ``(data_cfg, tokenizer, transform, rank, world_size)``); the
#: config's validation and the data tests read this registry. A new format: a class here, plus its test.
DATA_KINDS: dict[str, type] = {"world": WorldSource, "csv": CsvSource, "wds": WdsSource}


def build_train_source(cfg: Config, tokenizer: Tokenizer, transform: Transform, rank: int = 0,
                       world_size: int = 1) -> TrainSource:
    """The training data of ``cfg.data`` for ``rank`` of ``world_size`` (see the module docstring)."""
    kind = cfg.data.kind
    if kind not in DATA_KINDS:
        raise DataError(f"data.kind: unknown kind {kind!r} ({', '.join(DATA_KINDS)})")
    return DATA_KINDS[kind](cfg.data, tokenizer, transform, rank, world_size)
