"""Webdataset tar shards as img2dataset writes them, with OpenCLIP's conventions.

``data.train_data`` is one or more shard patterns joined with ``::`` (``/data/laion/{00000..04999}.tar::
/data/cc12m/{00000..01242}.tar``); brace patterns are expanded with ``braceexpand``; anything ``webdataset``'s
``gopen`` opens works (local paths, ``pipe:`` commands). A sample is the files sharing a key; its image is the
first of ``jpg``, ``png``, ``jpeg``, ``webp`` and its caption ``txt``.

Epoch size: ``data.train_num_samples``, else ``sizes.json`` (shard file name -> count) or ``_info.json``
(``dataset_size``) beside the shards, as img2dataset writes them. It is needed only to resume.

Order: each epoch shuffles the shard list with ``(data.train_seed, epoch)``; rank ``r`` of ``W`` takes shards
``r::W`` of it (or, with fewer shards than ranks, every ``W``-th sample), and its data-loader worker ``k`` of
``K`` shards ``k::K`` of those, with a shuffle buffer seeded by ``(seed, epoch, rank, worker)``; each worker
builds whole batches, taken from the workers in turn. So a run is reproducible for a fixed ``W`` and ``K``.
Resuming at step ``s`` skips forward deterministically: to the epoch and the fraction of each worker's shard
list that ``s * batch_size`` samples of this rank correspond to (shard granularity, as OpenCLIP).

Bad input is counted, never fatal on its own: ``bad_shard`` (missing, unreadable or truncated tar; the samples
read before the damage are kept), ``missing_image``, ``bad_image``, ``empty_caption``.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from pathlib import Path

import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from ..config import DataConfig
from .base import (
    BadSampleGuard,
    Batch,
    DataError,
    SkipSample,
    Tokenizer,
    Transform,
    check_caption,
    collect,
    decode_image,
    iterate_loader,
)

IMAGE_KEYS = ("jpg", "png", "jpeg", "webp")
CAPTION_KEY = "txt"


def _deps():
    try:
        import braceexpand
        import webdataset
    except ImportError as e:
        raise DataError(f"data.kind=wds needs the packages webdataset and braceexpand ({e.name} is missing)") \
            from None
    return braceexpand, webdataset


def expand_urls(spec: str) -> list[str]:
    """Shard URLs of ``a/{000..009}.tar::b/x.tar`` style specs, in order."""
    braceexpand, _ = _deps()
    urls = []
    for part in spec.split("::"):
        part = part.strip()
        if part:
            urls.extend(braceexpand.braceexpand(part))
    if not urls:
        raise DataError(f"data.train_data: no shards in {spec!r}")
    return urls


def _is_local(url: str) -> bool:
    return "://" not in url and not url.startswith("pipe:")


def dataset_size(urls: list[str]) -> int | None:
    """Samples in ``urls`` according to ``sizes.json`` or ``_info.json`` beside them (None if unknown)."""
    total = 0
    for folder in dict.fromkeys(str(Path(u).parent) for u in urls if _is_local(u)):
        sizes, info = Path(folder) / "sizes.json", Path(folder) / "_info.json"
        mine = [u for u in urls if _is_local(u) and str(Path(u).parent) == folder]
        if sizes.is_file():
            table = json.loads(sizes.read_text())
            try:
                total += sum(int(table[Path(u).name]) for u in mine)
            except KeyError as e:
                raise DataError(f"data.train_data: {sizes} has no entry for {e.args[0]}") from None
        elif info.is_file() and "dataset_size" in (meta := json.loads(info.read_text())):
            total += int(meta["dataset_size"])
        else:
            return None
    return total or None


def shard_samples(url: str) -> Iterator[dict | SkipSample]:
    """The samples of one shard (dicts: ``__key__``, ``__url__`` and one entry per file extension); a missing,
    unreadable or truncated shard ends with a ``SkipSample("bad_shard")`` after the samples read before."""
    _, webdataset = _deps()
    from webdataset.tariterators import base_plus_ext, tar_file_iterator

    errors: list[Exception] = []

    def stop(exn: Exception) -> bool:
        errors.append(exn)
        return False

    current: dict | None = None
    try:
        with webdataset.gopen(url) as stream:
            for item in tar_file_iterator(stream, handler=stop):
                prefix, suffix = base_plus_ext(item["fname"])
                if prefix is None:
                    continue
                if current is not None and current["__key__"] != prefix:
                    yield current
                    current = None
                if current is None:
                    current = {"__key__": prefix, "__url__": url}
                current[suffix.lower()] = item["data"]
    except Exception as e:  # noqa: BLE001 - a shard that cannot be opened or read at all
        errors.append(e)
    if errors:
        # the sample being read when the shard broke may be incomplete: drop it with the shard
        e = errors[0]
        yield SkipSample("bad_shard", f"{url} ({type(e).__name__}: {str(e).split(' @ ')[0]})")
    elif current is not None:
        yield current


def sample_pair(sample: dict | SkipSample, transform: Transform) -> tuple[torch.Tensor, str]:
    """(image tensor, caption) of an img2dataset sample; raises ``SkipSample`` for a bad one."""
    if isinstance(sample, SkipSample):
        raise sample
    key = next((k for k in IMAGE_KEYS if k in sample), None)
    if key is None:
        raise SkipSample("missing_image", f"{sample['__url__']}:{sample['__key__']}")
    caption = check_caption(sample.get(CAPTION_KEY))
    return decode_image(sample[key], transform), caption


class _Stream(IterableDataset):
    """Whole batches from this rank's shards; each data-loader worker reads its own share of them."""

    def __init__(self, src: WdsSource, start_step: int, batch_size: int):
        self.src, self.start_step, self.batch_size = src, start_step, batch_size

    def __iter__(self) -> Iterator[Batch]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        src, b = self.src, self.batch_size
        samples = src.samples(worker, workers, consumed=self.start_step * b)
        pair = lambda s: sample_pair(s, src.transform)  # noqa: E731
        while True:
            batch = collect(samples, pair, b, src.tokenizer, max_attempts=100 * b + 1000)
            if batch is None:
                return
            yield batch


class WdsSource:
    """Training batches from webdataset shards (see the module docstring)."""

    def __init__(self, cfg: DataConfig, tokenizer: Tokenizer, transform: Transform, rank: int = 0,
                 world_size: int = 1):
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, {world_size}), got {rank}")
        self.cfg, self.rank, self.world_size = cfg, rank, world_size
        self.tokenizer, self.transform = tokenizer, transform
        self.urls = expand_urls(cfg.train_data)
        local = [u for u in self.urls if _is_local(u)]
        if local and not any(Path(u).is_file() for u in local):
            raise DataError(f"data.train_data: none of the {len(local)} shards exist (first: {local[0]})")
        self.num_samples = cfg.train_num_samples or dataset_size(self.urls)
        self.guard = BadSampleGuard(cfg.max_bad_fraction, cfg.bad_min_samples)

    def rank_shards(self, epoch: int) -> tuple[list[str], bool]:
        """This rank's shards in epoch ``epoch``, and whether samples must be split by rank instead."""
        urls = list(self.urls)
        random.Random(f"wds-shards:{self.cfg.train_seed}:{epoch}").shuffle(urls)
        if len(urls) >= self.world_size:
            return urls[self.rank::self.world_size], False
        return urls, True

    def samples(self, worker: int, workers: int, consumed: int = 0) -> Iterator[dict | SkipSample]:
        """Endless samples of one worker of this rank, starting where ``consumed`` samples of this rank end."""
        epoch, skip_frac = 0, 0.0
        if consumed:
            if not self.num_samples:
                raise DataError("data.train_num_samples: needed to resume webdataset training (or a sizes.json "
                                "beside the shards)")
            per_rank = max(1, self.num_samples // self.world_size)
            epoch, skip_frac = consumed // per_rank, (consumed % per_rank) / per_rank
        buffer_size = self.cfg.shuffle_buffer
        if worker >= len(self.rank_shards(0)[0]):
            return  # more workers than shards: this one has none
        while True:
            shards, split_samples = self.rank_shards(epoch)
            mine = shards[worker::workers]
            mine = mine[int(skip_frac * len(mine)):]
            skip_frac = 0.0
            rng = random.Random(f"wds-buffer:{self.cfg.train_seed}:{epoch}:{self.rank}:{worker}")
            buffer: list = []
            n = 0
            for url in mine:
                for i, s in enumerate(shard_samples(url)):
                    if split_samples and not isinstance(s, SkipSample) and i % self.world_size != self.rank:
                        continue
                    n += 1
                    if buffer_size <= 1:
                        yield s
                        continue
                    buffer.append(s)
                    if len(buffer) >= buffer_size:
                        k = rng.randrange(len(buffer))
                        buffer[k], buffer[-1] = buffer[-1], buffer[k]
                        yield buffer.pop()
            rng.shuffle(buffer)
            yield from buffer
            if mine and n == 0:
                raise DataError(f"data.train_data: the shards of worker {worker} hold no samples "
                                f"(first: {mine[0]})")
            epoch += 1

    def batches(self, start_step: int, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """``(images, tokens)`` for steps ``start_step, start_step + 1, ...`` (endless)."""
        stream = _Stream(self, start_step, batch_size)
        if self.cfg.workers > 0:
            it: Iterator[Batch] = iterate_loader(DataLoader(stream, batch_size=None,
                                                            num_workers=self.cfg.workers, prefetch_factor=4))
        else:
            it = iter(stream)
        for batch in it:
            self.guard.add(batch)
            yield batch.images, batch.tokens

    def stats(self) -> dict:
        return {**self.guard.stats(), "shards": len(self.urls), "num_samples": self.num_samples}
