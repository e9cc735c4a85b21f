"""The one CSV reader: image-caption pairs from a CSV/TSV file with a header row, with OpenCLIP's conventions.

One row per pair; ``data.csv_img_key`` (default ``filepath``) names the image-path column and
``data.csv_caption_key`` (default ``title``) the caption column; ``data.csv_separator`` is ``,`` by default
(``"\\t"`` for OpenCLIP's usual TSV files). Relative image paths are relative to the CSV's folder. Several rows
may share an image (evaluation groups them).

The trainer (``data.kind=csv``, through :class:`~sparseclip.data.sources.CsvFormat`) and the commands that read
the user's pairs (``eval --data``, ``analyze --data``, ``index build --data``) read a CSV here, and nowhere
else; ``option`` names what the user passed the file as (``data.train_data``, ``--data``), so a message points
at the setting to fix. Training order and bad-row handling: :mod:`sparseclip.data.pairs`.
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

from .base import DataError
from .pairs import PairRows, resolve_image

#: where each column's name is set, for messages
_COLUMN_SETTING = {"image": "data.csv_img_key", "caption": "data.csv_caption_key", "label": "--label-key"}


def _field_limit() -> None:
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))


def read_csv(path: str | Path, img_key: str = "filepath", caption_key: str = "title", separator: str = ",",
             label_keys: tuple[str, ...] | list[str] = (), option: str = "data.train_data") -> PairRows:
    """The rows of a CSV file with a header row: images resolved against the CSV's folder, captions, and the
    values of the columns ``label_keys``. A file that cannot be read as such is one :class:`DataError` line
    starting with ``option``."""
    path = Path(path)
    if path.is_dir():
        raise DataError(f"{option}: {path} is a folder, not a CSV file")
    if not path.is_file():
        raise DataError(f"{option}: CSV file not found: {path}")
    _field_limit()
    label_keys = tuple(dict.fromkeys(label_keys))
    try:
        with path.open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f, delimiter=separator)
            cols = reader.fieldnames or []
            for key, what in ((img_key, "image"), (caption_key, "caption"), *((k, "label") for k in label_keys)):
                if key not in cols:
                    raise DataError(f"{option}: no {what} column {key!r} in {path} ({_COLUMN_SETTING[what]}; "
                                    f"columns: {', '.join(cols) or 'none'}; separator {separator!r})")
            rows = list(reader)
    except UnicodeDecodeError as e:
        raise DataError(f"{option}: {path} is not UTF-8 text (byte {e.start}); re-save it as UTF-8") from None
    except csv.Error as e:
        raise DataError(f"{option}: {path} is not a readable CSV ({e})") from None
    except OSError as e:
        raise DataError(f"{option}: cannot read {path} ({e.strerror or type(e).__name__})") from None
    if not rows:
        raise DataError(f"{option}: {path} has no rows")
    ids = [(row.get(img_key) or "").strip() for row in rows]
    return PairRows(images=[resolve_image(path.parent, i) for i in ids], ids=ids,
                    captions=[row.get(caption_key) or "" for row in rows],
                    labels={k: [row.get(k) or "" for row in rows] for k in label_keys}, source=str(path))


__all__ = ["read_csv"]
