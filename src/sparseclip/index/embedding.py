"""Images to sparse codes in chunks, so a large collection never sits in memory as a dense matrix."""

from __future__ import annotations

from collections.abc import Iterable

import scipy.sparse as sp
from PIL import Image

from ..model import SparseCLIP
from ..model.embed import encode_images
from .codes import as_csr


def encode_items(model: SparseCLIP, items: Iterable[tuple[str, str | None, Image.Image]], image_size: int,
                 batch_size: int = 256) -> tuple[sp.csr_matrix, list[str], list[str]]:
    """Encode ``(id, caption or None, PIL image)`` items; returns ``(codes CSR, ids, captions)`` in order
    (missing captions become "")."""
    chunks: list[sp.csr_matrix] = []
    ids: list[str] = []
    captions: list[str] = []
    batch: list[Image.Image] = []

    def flush() -> None:
        if batch:
            chunks.append(as_csr(encode_images(model, batch, image_size, batch_size=batch_size)))
            batch.clear()

    for item_id, caption, image in items:
        ids.append(str(item_id))
        captions.append(caption or "")
        batch.append(image)
        if len(batch) >= batch_size:
            flush()
    flush()
    if not chunks:
        return sp.csr_matrix((0, model.code_dim), dtype="float32"), ids, captions
    return sp.vstack(chunks, format="csr"), ids, captions
