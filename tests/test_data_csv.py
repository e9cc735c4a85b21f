"""CSV training data: bad rows (missing file, corrupt/truncated image, empty caption) are skipped and counted,
batches stay full and deterministic, too many bad rows stop the run with one clear line."""

import io
import itertools

import pytest
import torch
from PIL import Image

from sparseclip.config import ConfigError, load_config
from sparseclip.data.base import DataError
from sparseclip.data.sources import build_train_source
from sparseclip.model import get_tokenizer, image_transform

COLORS = ["red", "green", "blue", "yellow", "purple", "orange", "white", "black"]
RGB = {"red": (255, 0, 0), "green": (0, 255, 0), "blue": (0, 0, 255), "yellow": (255, 255, 0),
       "purple": (128, 0, 128), "orange": (255, 165, 0), "white": (255, 255, 255), "black": (0, 0, 0)}


def _png(color) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (16, 16), RGB[color]).save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture()
def csv_dir(tmp_path):
    """8 good rows plus: a missing file, a corrupt image, a truncated image, an empty caption."""
    (tmp_path / "img").mkdir()
    rows = []
    for c in COLORS:
        (tmp_path / "img" / f"{c}.png").write_bytes(_png(c))
        rows.append((f"img/{c}.png", f"a {c} square"))
    (tmp_path / "img" / "corrupt.png").write_bytes(b"not an image at all")
    (tmp_path / "img" / "trunc.png").write_bytes(_png("red")[:40])
    (tmp_path / "img" / "empty.png").write_bytes(_png("blue"))
    rows += [("img/missing.png", "a ghost"), ("img/corrupt.png", "garbage"), ("img/trunc.png", "half"),
             ("img/empty.png", "   ")]
    text = "filepath\ttitle\n" + "".join(f"{p}\t{c}\n" for p, c in rows)
    (tmp_path / "train.tsv").write_text(text)
    return tmp_path


def _source(csv_dir, *extra, rank=0, world_size=1):
    cfg = load_config("micro", ["data.kind=csv", f"data.train_data={csv_dir / 'train.tsv'}",
                                "data.csv_separator=\"\\t\"", "data.image_size=16", *extra])
    tok = get_tokenizer(cfg.model, cfg.data.context_length)
    return build_train_source(cfg, tok, image_transform(16), rank, world_size)


def _caption_of(img: torch.Tensor) -> str:
    # the mean colour of a transformed image identifies its row
    means = {c: image_transform(16)(Image.new("RGB", (16, 16), RGB[c])).mean((1, 2)) for c in COLORS}
    return min(means, key=lambda c: (means[c] - img.mean((1, 2))).abs().sum().item())


def test_bad_rows_skipped_counted_batches_full(csv_dir):
    src = _source(csv_dir, "data.max_bad_fraction=0.5", "data.bad_min_samples=1000")
    batches = list(itertools.islice(src.batches(0, 4), 9))  # 36 samples: every row seen several times
    assert all(b[0].shape == (4, 3, 16, 16) and b[1].shape == (4, 32) for b in batches)
    st = src.stats()
    assert st["seen"] == 36 and st["attempted"] == 36 + st["skipped_total"]
    assert set(st["skipped"]) == {"missing_file", "bad_image", "empty_caption"}
    assert st["skipped"]["bad_image"] >= 2 * min(st["skipped"]["missing_file"], st["skipped"]["empty_caption"])
    # the pairing of image and caption survives skipping
    tok = get_tokenizer(load_config("micro").model, 32)
    for images, tokens in batches[:3]:
        for img, t in zip(images, tokens, strict=True):
            assert torch.equal(t, tok([f"a {_caption_of(img)} square"])[0])


def test_csv_deterministic_by_step_and_rank(csv_dir):
    a = list(itertools.islice(_source(csv_dir, "data.bad_min_samples=1000").batches(0, 4), 4))
    b = next(_source(csv_dir, "data.bad_min_samples=1000").batches(3, 4))
    assert torch.equal(a[3][0], b[0]) and torch.equal(a[3][1], b[1])
    for step in range(4):  # the ranks' shares concatenate to the single-process batch, bad rows included
        single = next(_source(csv_dir, "data.bad_min_samples=1000").batches(step, 4))
        parts = [next(_source(csv_dir, "data.bad_min_samples=1000", rank=r, world_size=2).batches(step, 2))
                 for r in range(2)]
        assert torch.equal(torch.cat([p[0] for p in parts]), single[0])
        assert torch.equal(torch.cat([p[1] for p in parts]), single[1])


def test_too_many_bad_rows_stop_with_one_line(csv_dir):
    src = _source(csv_dir, "data.max_bad_fraction=0.05", "data.bad_min_samples=8")
    with pytest.raises(DataError) as err:
        list(itertools.islice(src.batches(0, 4), 20))
    msg = str(err.value)
    assert "\n" not in msg and "data.max_bad_fraction=0.05" in msg and "bad_image" in msg


def test_csv_config_errors(csv_dir):
    with pytest.raises(ConfigError, match="data.train_data"):
        load_config("micro", ["data.kind=csv"])
    with pytest.raises(DataError, match="data.csv_caption_key"):
        _source(csv_dir, "data.csv_caption_key=caption")
    with pytest.raises(DataError, match="not found"):
        load = load_config("micro", ["data.kind=csv", f"data.train_data={csv_dir / 'nope.csv'}"])
        build_train_source(load, get_tokenizer(load.model), image_transform(16))
