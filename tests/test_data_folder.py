"""Evaluation sets on disk: image folders and CLIP_benchmark's webdataset layout -> zero-shot tasks."""

import io
import tarfile
from collections import Counter

import pytest
from PIL import Image

from sparseclip.data.base import DataError
from sparseclip.data.folder import load_eval_set

pytest.importorskip("webdataset", reason="webdataset not installed")


def _img_bytes(color, fmt="PNG"):
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), color).save(buf, fmt)
    return buf.getvalue()


def test_image_folder_with_bad_file(tmp_path):
    for name, color in (("red_thing", "red"), ("blue_thing", "blue")):
        (tmp_path / name).mkdir()
        for i in range(3):
            (tmp_path / name / f"{i}.png").write_bytes(_img_bytes(color))
    (tmp_path / "red_thing" / "bad.jpg").write_bytes(b"garbage")
    (tmp_path / "templates.txt").write_text("a picture of a {}.\n{}\n")
    counts = Counter()
    task = load_eval_set(tmp_path, counts=counts)
    assert task.classnames == ["blue thing", "red thing"] and task.templates == ["a picture of a {}.", "{}"]
    assert task.targets == [0, 0, 0, 1, 1, 1] and counts == {"bad_image": 1}
    assert task.images[0].getpixel((0, 0)) == (0, 0, 255)


def test_clip_benchmark_wds_layout(tmp_path):
    (tmp_path / "classnames.txt").write_text("cat\ndog\n")
    (tmp_path / "zeroshot_classification_templates.txt").write_text("a photo of a {c}.\n")
    (tmp_path / "test").mkdir()
    (tmp_path / "test" / "nshards.txt").write_text("1\n")
    with tarfile.open(tmp_path / "test" / "0.tar", "w") as t:
        for i, (cls, data) in enumerate([(b"1", _img_bytes("red", "WEBP")), (b"0", _img_bytes("blue")),
                                         (b"7", _img_bytes("blue")), (b"0", b"broken")]):
            for ext, blob in (("webp", data), ("cls", cls)):
                ti = tarfile.TarInfo(f"s{i:04d}.{ext}")
                ti.size = len(blob)
                t.addfile(ti, io.BytesIO(blob))
    counts = Counter()
    task = load_eval_set(tmp_path, counts=counts)
    assert task.classnames == ["cat", "dog"] and task.templates == ["a photo of a {}."]
    assert task.targets == [1, 0] and counts == {"bad_label": 1, "bad_image": 1}
    with pytest.raises(DataError, match="not an image folder"):
        load_eval_set(tmp_path / "test")
