"""The data layer's building blocks, shared by every format: a batch with its skip counts, skipping and
counting bad samples, image opening, which sample positions each rank takes at each step
(:func:`rank_indices`) and the epoch permutation of a finite data set; :class:`StepSource`, the base of
sources whose batch is a pure function of the step. The formats (world, CSV, webdataset) and
``build_train_source`` are in :mod:`sparseclip.data.sources`."""

from __future__ import annotations

import io
import itertools
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from ..config import DataConfig

Tokenizer = Callable[[list[str]], torch.Tensor]
Transform = Callable[[Any], torch.Tensor]


class DataError(ValueError):
    """A data problem that stops a run (too many bad samples, no data found), described in one line."""


@dataclass
class Batch:
    """A batch plus the counts of what it took to build it (so worker processes can report skips)."""

    images: torch.Tensor
    tokens: torch.Tensor
    attempted: int = 0
    skipped: Counter = field(default_factory=Counter)
    first_error: str = ""
    captions: list[str] = field(default_factory=list)

    @staticmethod
    def merge(parts: list[Batch], tokenizer: Tokenizer) -> Batch:
        """One batch from several (images concatenated in order, captions tokenized together)."""
        out = Batch(torch.cat([p.images for p in parts]), torch.empty(0))
        for p in parts:
            out.attempted += p.attempted
            out.skipped.update(p.skipped)
            out.first_error = out.first_error or p.first_error
            out.captions.extend(p.captions)
        out.tokens = tokenizer(out.captions)
        return out


class SkipSample(Exception):
    """One bad sample: ``reason`` is the counter it goes to (missing_file, bad_image, empty_caption, ...)."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


def decode_image(src: str | Path | bytes, transform: Transform) -> torch.Tensor:
    """Open an image file or encoded bytes fully, as RGB, and transform it; bad input raises
    :class:`SkipSample` (``missing_file`` or ``bad_image``; truncated files are bad, never half-read)."""
    name = f"{len(src)} bytes" if isinstance(src, bytes) else str(src)
    if not isinstance(src, bytes) and Path(src).exists() and not Path(src).is_file():
        # a folder, a FIFO, a device: never opened (a FIFO would block forever)
        raise SkipSample("bad_image", f"{name} (not a regular file)")
    try:
        with Image.open(io.BytesIO(src) if isinstance(src, bytes) else src) as im:
            im.load()
            rgb = im.convert("RGB")
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        raise SkipSample("missing_file", name) from None
    except Exception as e:  # noqa: BLE001 - PIL raises many kinds (OSError, SyntaxError, ValueError, ...)
        raise SkipSample("bad_image", f"{name} ({type(e).__name__}: {e})") from None
    try:
        return transform(rgb)
    except Exception as e:  # noqa: BLE001
        raise SkipSample("bad_image", f"{name} (transform failed: {type(e).__name__}: {e})") from None


def open_rgb(src: str | Path | bytes) -> Image.Image:
    """An image file or encoded bytes, fully read, as an RGB PIL image; bad input raises :class:`SkipSample`.
    The one place the project opens an image."""
    return decode_image(src, lambda im: im)


def check_caption(text: Any) -> str:
    """The caption as a stripped string; empty or missing raises :class:`SkipSample` (``empty_caption``)."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    if not isinstance(text, str) or not text.strip():
        raise SkipSample("empty_caption", repr(text))
    return text.strip()


def collect(candidates: Iterable[Any], load: Callable[[Any], tuple[torch.Tensor, str]], n: int,
            tokenizer: Tokenizer | None, max_attempts: int | None = None) -> Batch | None:
    """Load samples from ``candidates`` until ``n`` are good; skip and count bad ones.

    Returns ``None`` if the candidates ran out first; raises :class:`DataError` after ``max_attempts``.
    Without a tokenizer the batch keeps its captions and empty tokens (see :meth:`Batch.merge`).
    """
    images: list[torch.Tensor] = []
    captions: list[str] = []
    batch = Batch(torch.empty(0), torch.empty(0))
    max_attempts = max_attempts or 10 * n + 100
    for cand in candidates:
        if batch.attempted >= max_attempts:
            raise DataError(f"data: {batch.attempted} samples tried for one batch of {n}, "
                            f"{sum(batch.skipped.values())} bad; first: {batch.first_error}")
        batch.attempted += 1
        try:
            img, cap = load(cand)
        except SkipSample as e:
            batch.skipped[e.reason] += 1
            batch.first_error = batch.first_error or str(e)
            continue
        images.append(img)
        captions.append(cap)
        if len(images) == n:
            break
    if len(images) < n:
        return None
    batch.images, batch.captions = torch.stack(images), captions
    if tokenizer is not None:
        batch.tokens = tokenizer(captions)
    return batch


class TrainSource(Protocol):
    """What the trainer consumes."""

    def batches(self, start_step: int, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        ...

    def stats(self) -> dict:
        ...


class BadSampleGuard:
    """Counts attempted/skipped samples and stops the run past ``max_bad_fraction``."""

    def __init__(self, max_bad_fraction: float, min_samples: int):
        self.max_bad_fraction = max_bad_fraction
        self.min_samples = min_samples
        self.seen = 0
        self.attempted = 0
        self.skipped: Counter = Counter()
        self.first_error = ""

    def add(self, batch: Batch) -> None:
        """Record a batch's counts, then raise :class:`DataError` if too many samples were bad."""
        self.seen += int(batch.images.shape[0])
        self.attempted += batch.attempted
        self.skipped.update(batch.skipped)
        if batch.first_error and not self.first_error:
            self.first_error = batch.first_error
        self.check()

    def check(self) -> None:
        bad = sum(self.skipped.values())
        if self.attempted < self.min_samples or bad <= self.max_bad_fraction * self.attempted:
            return
        reasons = ", ".join(f"{k}={v}" for k, v in sorted(self.skipped.items()))
        raise DataError(
            f"data: {bad} of {self.attempted} samples were bad ({bad / self.attempted:.1%} > "
            f"data.max_bad_fraction={self.max_bad_fraction}; {reasons}); first: {self.first_error}"
        )

    def stats(self) -> dict:
        return {"seen": self.seen, "attempted": self.attempted, "skipped": dict(self.skipped),
                "skipped_total": sum(self.skipped.values())}


class _StepDataset(Dataset):
    """Map-style dataset whose item ``s`` is the whole batch of step ``s`` (workers build whole batches)."""

    def __init__(self, make_batch: Callable[[int, int], Batch], batch_size: int):
        self.make_batch = make_batch
        self.batch_size = batch_size

    def __getitem__(self, step: int) -> Batch:
        return self.make_batch(step, self.batch_size)


def _identity(x: Batch) -> Batch:
    return x


def iterate_loader(loader: DataLoader) -> Iterator[Batch]:
    """Iterate a DataLoader; a :class:`DataError` raised in a worker comes back as one line, not the
    worker's traceback."""
    it = iter(loader)
    while True:
        try:
            batch = next(it)
        except StopIteration:
            return
        except DataError as e:
            lines = [ln for ln in str(e).splitlines() if "DataError: " in ln]
            raise DataError(lines[-1].split("DataError: ", 1)[1] if lines else str(e)) from None
        yield batch


def rank_indices(step: int, rank: int, world_size: int, local_batch: int) -> range:
    """Global sample positions of rank ``rank``'s share of step ``step`` (no DistributedSampler needed).

    Step ``s`` covers positions ``s*W*b ... (s+1)*W*b - 1`` and rank ``r`` takes the contiguous slice
    ``(s*W + r)*b ...``: concatenating the ranks' batches in rank order gives exactly the batch a single
    process with batch ``W*b`` sees at step ``s`` (so losses and gradients agree, and resuming at any step is
    a pure function of the step). ``StepSource.global_indices`` uses it. Map positions onto a finite
    dataset (``% len``, or through an epoch permutation) in the dataset.
    """
    if not 0 <= rank < world_size:
        raise ValueError(f"rank must be in [0, {world_size}), got {rank}")
    if step < 0 or local_batch < 1:
        raise ValueError(f"need step >= 0 and local_batch >= 1, got step={step}, local_batch={local_batch}")
    start = (step * world_size + rank) * local_batch
    return range(start, start + local_batch)


class EpochPermutation:
    """The row at each global sample position of a finite data set of ``n`` rows: epoch ``e`` (positions
    ``e*n ... (e+1)*n - 1``) reads a permutation seeded by ``(seed, e)``, so the order is a pure function of
    the position (resumable, rank-independent). The last epoch's permutation is kept."""

    def __init__(self, n: int, seed: int):
        self.n, self.seed = n, seed
        self._epoch, self._perm = -1, torch.empty(0, dtype=torch.long)

    def __call__(self, position: int) -> int:
        epoch = position // self.n
        if epoch != self._epoch:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._perm, self._epoch = torch.randperm(self.n, generator=g), epoch
        return int(self._perm[position % self.n])

    def rows(self, positions: range) -> torch.Tensor:
        """The rows at a contiguous range of positions, as one tensor (slices of at most a few permutations)."""
        parts, p = [], positions.start
        while p < positions.stop:
            end = min(positions.stop, (p // self.n + 1) * self.n)  # to the end of this epoch at most
            self(p)  # make this epoch's permutation current
            parts.append(self._perm[p % self.n:p % self.n + end - p])
            p = end
        return torch.cat(parts) if parts else torch.empty(0, dtype=torch.long)


class StepSource:
    """Base for sources whose batch at each step is a pure function of the step (world, CSV).

    Subclasses implement ``make_batch(step, batch_size) -> Batch``; with ``workers > 0`` whole batches are
    built in a torch ``DataLoader``'s worker processes, in step order.
    """

    def __init__(self, cfg: DataConfig, rank: int = 0, world_size: int = 1):
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, {world_size}), got {rank}")
        self.cfg = cfg
        self.rank, self.world_size = rank, world_size
        self.workers = cfg.workers
        self.guard = BadSampleGuard(cfg.max_bad_fraction, cfg.bad_min_samples)

    def make_batch(self, step: int, batch_size: int) -> Batch:  # pragma: no cover - abstract
        raise NotImplementedError

    def global_indices(self, step: int, batch_size: int) -> range:
        """Global sample positions of this rank's share of step ``step`` (see :func:`rank_indices`)."""
        return rank_indices(step, self.rank, self.world_size, batch_size)

    def batches(self, start_step: int, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """``(images, tokens)`` for steps ``start_step, start_step + 1, ...`` (infinite)."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        steps = itertools.count(start_step)
        if self.workers > 0:
            loader = DataLoader(_StepDataset(self.make_batch, batch_size), batch_size=None, sampler=steps,
                                num_workers=self.workers, collate_fn=_identity, prefetch_factor=4)
            it: Iterator[Batch] = iterate_loader(loader)
        else:
            it = (self.make_batch(s, batch_size) for s in steps)
        for batch in it:
            self.guard.add(batch)
            yield batch.images, batch.tokens

    def stats(self) -> dict:
        return self.guard.stats()
