"""A finite set of image-caption pairs, whatever file format it came from.

A file format's reader (the CSV reader :func:`sparseclip.data.csv_data.read_csv`, or a user's own, see
:class:`sparseclip.data.sources.FileFormat`) returns :class:`PairRows`: one entry per row, the image as written
and resolved, the caption, and the label values asked for. Everything after that is shared:

- :class:`PairSource` trains on the rows (the trainer's batches: an epoch permutation of the rows, bad rows
  skipped, counted and replaced);
- :func:`collect_pairs` turns them into the :class:`PairSet` that evaluation, analysis and indexing use (unique
  images, their captions, labels), reading images as it goes.

Order of a :class:`PairSource`: each epoch is a permutation of the rows seeded by ``(data.train_seed, epoch)``;
global position ``p`` is row ``perm_{p // N}[p % N]``, and step ``s`` of rank ``r`` on ``W`` ranks takes
positions ``(s*W + r)*B ... + B - 1``. A bad row (missing file, unreadable or truncated image, empty caption)
is skipped, counted, and replaced by rows drawn from a stream seeded by ``(seed, position)``, so batches stay
full, every step is reproducible, and the ranks' shares concatenate to the single-process batch.
"""

from __future__ import annotations

import itertools
import random
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from PIL import Image

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


@dataclass
class PairRows:
    """The rows of a finite image-caption data set, as a format's reader returns them (one entry per row).

    ``images``: the image file of each row, resolved (relative paths against the data file's folder; ``""`` for
    a row without one); ``ids``: the image as the file names it (what evaluation reports and de-duplicates on);
    ``captions``: as written (checked when used); ``labels``: per label column asked for, each row's value
    (``""`` for none); ``source``: the file, for messages."""

    images: list[str]
    ids: list[str]
    captions: list[str]
    labels: dict[str, list[str]] = field(default_factory=dict)
    source: str = ""

    def __len__(self) -> int:
        return len(self.images)


def resolve_image(root: Path, written: str) -> str:
    """The image file a data file at ``root`` names as ``written`` (``""`` when it names none)."""
    written = written.strip()
    return str(root / written) if written else ""


@dataclass
class PairSet:
    """Unique images (PIL) of a data file, their captions and which image each caption belongs to."""

    images: list = field(default_factory=list)
    ids: list[str] = field(default_factory=list)
    captions: list[str] = field(default_factory=list)
    caption_image: list[int] = field(default_factory=list)
    labels: dict[str, list[str]] = field(default_factory=dict)  # label column -> per image value ("" = none)
    skipped: Counter = field(default_factory=Counter)
    codes: Any = None  # with ``encode``: the images' codes, chunks joined (the images themselves are not kept)


def collect_pairs(rows: PairRows, label_keys: tuple[str, ...] | list[str] = (), limit: int = 0,
                  encode: Callable[[list], Any] | None = None, chunk: int = 256, shrink_to: int = 0,
                  option: str = "--data") -> PairSet:
    """The :class:`PairSet` of ``rows`` for evaluation; bad rows are skipped and counted.

    ``label_keys``: label columns whose per-image values are kept (an image's value is taken from its first row).
    ``limit``: keep only the first ``limit`` distinct images (0: all) and their captions.
    ``encode``: images are encoded ``chunk`` at a time as they are read and only their codes are kept
    (``PairSet.codes``), so memory does not grow with the number of full-size photos.
    ``shrink_to``: images kept in memory whose shorter side exceeds it are resized (Lanczos) to that shorter side
    as they are read (the analysis keeps its images; 1,000 12-megapixel photos would need 36 GB).
    ``option``: what the user passed the data as, for messages.
    """
    label_keys = tuple(dict.fromkeys(label_keys))
    out = PairSet(labels={k: [] for k in label_keys})
    at: dict[str, int] = {}
    pending: list = []
    coded: list = []
    for row, src in enumerate(rows.ids):
        try:
            caption = check_caption(rows.captions[row])
            if src not in at:
                if limit and len(out.ids) >= limit:
                    continue
                image = decode_image(rows.images[row], lambda im: im)  # PIL RGB, fully read, or SkipSample
                if shrink_to and min(image.size) > shrink_to:
                    f = shrink_to / min(image.size)
                    image = image.resize((max(1, round(image.width * f)), max(1, round(image.height * f))),
                                         resample=Image.LANCZOS)
                if encode is None:
                    out.images.append(image)
                else:
                    pending.append(image)
                    if len(pending) >= chunk:
                        coded.append(encode(pending))
                        pending = []
                out.ids.append(src)
                for k in label_keys:
                    out.labels[k].append(rows.labels[k][row].strip())
                at[src] = len(out.ids) - 1
        except SkipSample as e:
            out.skipped[e.reason] += 1
            continue
        out.captions.append(caption)
        out.caption_image.append(at[src])
    if encode is not None:
        if pending:
            coded.append(encode(pending))
        if coded and isinstance(coded[0], torch.Tensor):
            out.codes = torch.cat(coded)
        elif coded:  # e.g. scipy.sparse chunks (an index's codes)
            import scipy.sparse as sp

            out.codes = sp.vstack(coded, format="csr")
    if not out.ids or not out.captions:
        raise DataError(f"{option}: {rows.source}: no usable image-caption pairs ({dict(out.skipped)})")
    return out


class PairSource(StepSource):
    """Training batches from the rows of a finite data file (see the module docstring)."""

    def __init__(self, cfg: DataConfig, rows: PairRows, tokenizer: Tokenizer, transform: Transform,
                 rank: int = 0, world_size: int = 1):
        super().__init__(cfg, rank, world_size)
        self.images, self.captions = rows.images, rows.captions
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
        # the seed's name predates other file formats: kept, so a CSV run's batches stay what they were
        rng = random.Random(f"csv-replace:{self.seed}:{position}")
        yield from (rng.randrange(len(self.images)) for _ in itertools.count())

    def make_batch(self, step: int, batch_size: int) -> Batch:
        slots = [collect(self._candidates(p), self.load, 1, None, max_attempts=100)
                 for p in self.global_indices(step, batch_size)]
        return Batch.merge(slots, self.tokenizer)  # type: ignore[arg-type] - the candidates never run out


__all__ = ["PairRows", "PairSet", "PairSource", "collect_pairs", "resolve_image"]
