"""Image-caption pairs from a CSV file, with OpenCLIP's conventions.

One row per pair; ``data.csv_img_key`` (default ``filepath``) names the image-path column and
``data.csv_caption_key`` (default ``title``) the caption column; ``data.csv_separator`` is ``,`` by default
(``"\\t"`` for OpenCLIP's usual TSV files). Relative image paths are relative to the CSV's folder.

Order: each epoch is a permutation of the rows seeded by ``(data.train_seed, epoch)``; global position ``p``
is row ``perm_{p // N}[p % N]``, and step ``s`` of rank ``r`` on ``W`` ranks takes positions
``(s*W + r)*B ... + B - 1``. A bad row (missing file, unreadable or truncated image, empty caption) is
skipped, counted, and replaced by rows drawn from a stream seeded by ``(seed, position)``, so batches stay
full, every step is reproducible, and the ranks' shares concatenate to the single-process batch.
"""

from __future__ import annotations

import csv
import itertools
import random
import sys
from collections.abc import Iterator
from pathlib import Path

import torch

from ..config import DataConfig
from .base import (
    Batch,
    DataError,
    EpochPermutation,
    SkipSample,
    StepSource,
    Tokenizer,
    Transform,
    check_caption,
    collect,
    decode_image,
)


def _field_limit() -> None:
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))


def read_pairs(path: str | Path, img_key: str = "filepath", caption_key: str = "title",
               separator: str = ",") -> tuple[list[str], list[str]]:
    """(image paths resolved against the CSV's folder, captions) of a CSV file with a header row."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"data.train_data: CSV file not found: {path}")
    _field_limit()
    root = path.parent
    images, captions = [], []
    try:
        with path.open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f, delimiter=separator)
            cols = reader.fieldnames or []
            for key, label in ((img_key, "data.csv_img_key"), (caption_key, "data.csv_caption_key")):
                if key not in cols:
                    raise DataError(f"{label}: column {key!r} not in {path} (columns: {', '.join(cols) or 'none'}; "
                                    f"separator {separator!r})")
            for row in reader:
                rel = (row.get(img_key) or "").strip()
                images.append(str(root / rel) if rel else "")
                captions.append(row.get(caption_key) or "")
    except UnicodeDecodeError as e:
        raise DataError(f"data.train_data: {path} is not UTF-8 text (byte {e.start}); re-save it as UTF-8") from None
    except csv.Error as e:
        raise DataError(f"data.train_data: {path} is not a readable CSV ({e})") from None
    if not images:
        raise DataError(f"data.train_data: {path} has no rows")
    return images, captions


class CsvSource(StepSource):
    """Training batches from a CSV of image paths and captions (see the module docstring)."""

    def __init__(self, cfg: DataConfig, tokenizer: Tokenizer, transform: Transform, rank: int = 0,
                 world_size: int = 1):
        super().__init__(cfg, rank, world_size)
        self.images, self.captions = read_pairs(cfg.train_data, cfg.csv_img_key, cfg.csv_caption_key,
                                                cfg.csv_separator)
        self.tokenizer, self.transform = tokenizer, transform
        self.seed = cfg.train_seed
        self.row_at = EpochPermutation(len(self.images), self.seed)  # the row at a global position

    def __len__(self) -> int:
        return len(self.images)

    def load(self, row: int) -> tuple[torch.Tensor, str]:
        """(image tensor, caption) of a row; raises ``SkipSample`` for a bad row."""
        caption = check_caption(self.captions[row])
        if not self.images[row]:
            raise SkipSample("missing_file", f"row {row} has no image path")
        return decode_image(self.images[row], self.transform), caption

    def _candidates(self, position: int) -> Iterator[int]:
        """Rows for one batch slot: the slot's own row, then replacements seeded by the slot's position
        (so a rank's share equals the same slots of the single-process batch, bad rows or not)."""
        yield self.row_at(position)
        rng = random.Random(f"csv-replace:{self.seed}:{position}")
        yield from (rng.randrange(len(self.images)) for _ in itertools.count())

    def make_batch(self, step: int, batch_size: int) -> Batch:
        slots = [collect(self._candidates(p), self.load, 1, None, max_attempts=100)
                 for p in self.global_indices(step, batch_size)]
        return Batch.merge(slots, self.tokenizer)  # type: ignore[arg-type] - the candidates never run out
