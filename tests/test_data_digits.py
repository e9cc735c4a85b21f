"""``sparseclip import-digits``: scikit-learn's handwritten digits written as a labelled CSV set."""

import csv

import numpy as np
from PIL import Image
from sklearn.datasets import load_digits

from sparseclip.cli import main
from sparseclip.data.export import import_digits


def test_digits_are_written_as_scanned_with_their_labels(tmp_path):
    summary = import_digits(tmp_path, size=8, captions=2)
    digits = load_digits()
    assert (summary["train_images"], summary["test_images"]) == (1437, 360)  # every 5th of 1,797 is a test scan
    test = list(csv.DictReader(open(tmp_path / "test.csv")))
    train = list(csv.DictReader(open(tmp_path / "train.csv")))
    assert len(test) == 720 and len(train) == 2874  # two captions per image
    assert {r["digit"] for r in test} == {r["digit"] for r in train} and len({r["digit"] for r in test}) == 10
    # scan 5 (a test scan, index 5 % 5 == 0): its label, captions, parity and pixels (8 px: no resampling)
    rows = [r for r in test if r["filepath"] == "images/test_0005.png"]
    word = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")[digits.target[5]]
    assert [r["title"] for r in rows] == [f"a handwritten {word}", f"the digit {word}, written by hand"]
    assert rows[0]["parity"] == ("even" if digits.target[5] % 2 == 0 else "odd")
    pixels = np.asarray(Image.open(tmp_path / rows[0]["filepath"]))[:, :, 0]
    assert pixels.tolist() == (255 - digits.images[5] * 255 / 16).astype(np.uint8).tolist()
    assert pixels.min() < 64 and pixels.max() == 255  # dark ink on white


def test_import_digits_cli_refuses_bad_settings_in_one_line(tmp_path, capsys):
    assert main(["import-digits", str(tmp_path / "d"), "--captions", "9"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "captions" in err[0] and "Traceback" not in err[0]


def test_import_commands_refuse_an_unusable_output_folder_in_one_line(tmp_path, capsys):
    afile = tmp_path / "a_file"
    afile.write_text("x")
    for cmd in ("import-digits", "import-world"):
        assert main([cmd, str(afile / "sub")]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err == [f"sparseclip: error: OUT {afile / 'sub'}: {afile} is a file, not a folder"]
    assert afile.read_text() == "x"
