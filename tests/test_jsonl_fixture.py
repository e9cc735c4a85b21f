"""A data format of one's own, in this one file: JSON lines (``{"image": path, "caption": str, "label": str}``),
registered from the test, trains a model from scratch and on frozen towers' cached features, and is evaluated
through ``sparseclip eval --data``, with nothing else in the project changed; an unknown ``data.kind`` is one
clear error naming the registered formats."""

import json
from pathlib import Path

import pytest

from sparseclip.cli import main
from sparseclip.config import ConfigError, DataConfig, load_config
from sparseclip.data.base import DataError
from sparseclip.data.pairs import PairRows, resolve_image
from sparseclip.data.sources import DATA_FORMATS, FileFormat
from sparseclip.data.world import World


class JsonlFormat(FileFormat):
    """One JSON object per line: ``image`` (relative to the file's folder), ``caption`` and label fields."""

    path_help = "a JSON-lines file"
    suffixes = (".jsonl",)

    def read(self, path: str | Path, cfg: DataConfig, label_keys: tuple[str, ...] = (),
             option: str = "--data") -> PairRows:
        path = Path(path)
        if not path.is_file():
            raise DataError(f"{option}: JSON-lines file not found: {path}")
        lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        for key in label_keys:
            if not any(key in r for r in lines):
                raise DataError(f"{option}: no label field {key!r} in {path}")
        ids = [str(r.get("image", "")) for r in lines]
        return PairRows([resolve_image(path.parent, i) for i in ids], [i.strip() for i in ids],
                        [str(r.get("caption", "")) for r in lines],
                        {k: [str(r.get(k, "")) for r in lines] for k in label_keys}, str(path))


@pytest.fixture
def jsonl():
    DATA_FORMATS.register("jsonl", JsonlFormat())
    yield
    DATA_FORMATS.unregister("jsonl")


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """20 world images, one shape each; two caption lines per image, its shape as ``label``."""
    root = tmp_path_factory.mktemp("jsonl")
    (root / "img").mkdir()
    w = World(seed=11, image_size=32, max_objects=1)
    with (root / "pairs.jsonl").open("w") as f:
        for i in range(20):
            scene = w.scene(i)
            w.render(scene, i).save(root / "img" / f"{i}.png")
            for cap in (scene.caption, f"a {scene.objects[0].color} shape"):
                f.write(json.dumps({"image": f"img/{i}.png", "caption": cap, "label": scene.objects[0].shape}) + "\n")
    return root / "pairs.jsonl"


RUN = ["train.steps=4", "train.batch_size=8", "train.log_every=2", "train.ckpt_every=100", "train.ckpt_fractions=[]",
       "train.tensorboard=false", "--no-progress"]


@pytest.mark.parametrize("frozen", [False, True], ids=["from-scratch", "feature-cache"])
def test_jsonl_trains_and_evaluates_end_to_end(jsonl, data, tmp_path, frozen, capsys):
    run = tmp_path / "run"
    towers = ["model.freeze_image=true", "model.freeze_text=true", "model.allow_random_frozen=true"] if frozen else []
    assert main(["train", "micro", "data.kind=jsonl", f"data.train_data={data}", *towers, *RUN,
                 "--out", str(run)]) == 0
    printed = capsys.readouterr().out
    assert ("training the heads on cached tower features" in printed) == frozen
    assert (run / "features.safetensors").is_file() == frozen
    stats = json.loads((run / "data_stats.json").read_text())
    assert stats.get("cached_pairs", 40) == 40 and stats["skipped_total"] == 0
    out = tmp_path / "eval.json"
    assert main(["eval", str(run), "--data", str(data), "--label-key", "label", "--no-probe", "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res["dataset"]["images"] == 20 and res["dataset"]["captions"] == 40
    assert 0 <= res["zeroshot"]["label"]["acc1"] <= 1 and 0 <= res["zeroshot_mean_acc1"] <= 1
    assert all(0 <= res["retrieval"][f"{d}_R@{k}"] <= 1 for d in ("text_to_image", "image_to_text") for k in (1, 5))
    assert res["retrieval"]["text_to_image_R@10"] >= res["retrieval"]["text_to_image_R@1"]


def test_unknown_data_kind_is_one_error_naming_the_formats(jsonl, capsys):
    with pytest.raises(ConfigError, match=r"data\.kind: must be one of world, csv, wds, jsonl; got 'parquet'"):
        load_config("micro", ["data.kind=parquet"])
    with pytest.raises(ConfigError, match=r"data\.train_data: required for data\.kind=jsonl \(a JSON-lines file\)"):
        load_config("micro", ["data.kind=jsonl"])
    assert main(["train", "micro", "data.kind=parquet", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "data.kind" in err[0] and "world, csv, wds, jsonl" in err[0]


def test_jsonl_batches_equal_the_same_rows_as_a_csv(jsonl, data, tmp_path):
    import csv
    import itertools

    import torch

    from sparseclip.data.sources import build_train_source
    from sparseclip.model import get_tokenizer, image_transform

    rows = [json.loads(line) for line in data.read_text().splitlines()]
    as_csv = data.parent / "same.csv"
    with as_csv.open("w", newline="") as f:
        csv.writer(f).writerows([["filepath", "title"], *([r["image"], r["caption"]] for r in rows)])
    got = []
    for kind, path in (("jsonl", data), ("csv", as_csv)):
        cfg = load_config("micro", [f"data.kind={kind}", f"data.train_data={path}"])
        src = build_train_source(cfg, get_tokenizer(cfg.model, 32), image_transform(32))
        got.append(list(itertools.islice(src.batches(3, 8), 2)))
    for (ia, ta), (ib, tb) in zip(*got, strict=True):
        assert torch.equal(ia, ib) and torch.equal(ta, tb)
