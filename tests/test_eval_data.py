"""The user's own data through every command: a labelled CSV (several captions per image, generated here), a
model trained a few steps on it with `sparseclip train`, then `eval --data`, `analyze --data`, `report`,
`index build --data` and `index search`, all through the CLI, each checked against values computed
independently in the test (brute-force retrieval, zero-shot, L0, AUROC, search ranking); and an image folder."""

import csv
import html
import json

import pytest
import torch
import torch.nn.functional as F

from sparseclip.cli import main
from sparseclip.data.world import World
from sparseclip.eval.dataset import load_csv_pairs, probe_split
from sparseclip.model import get_tokenizer
from sparseclip.model.checkpoint import load_model
from sparseclip.model.embed import encode_images, encode_texts


@pytest.fixture(scope="module")
def labelled(tmp_path_factory):
    """A CSV of 24 world images, 2 captions each (the first with an HTML-like tag the report must escape),
    `category` (shape) and `color` columns, one row with a missing image; and a micro model trained 6 steps
    on it through the CLI."""
    root = tmp_path_factory.mktemp("evaldata")
    w = World(seed=7, image_size=32, max_objects=1)
    (root / "img").mkdir()
    with (root / "pairs.csv").open("w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["filepath", "title", "category", "color"])
        for i in range(24):
            scene = w.scene(i)
            obj = scene.objects[0]
            w.render(scene, i).save(root / "img" / f"{i}.png")
            for cap in (f"{scene.caption} <b>", f"a {obj.color} shape"):
                out.writerow([f"img/{i}.png", cap, obj.shape, obj.color])
        out.writerow(["img/missing.png", "a lost image", "circle", "red"])
    assert main(["train", "micro", "data.kind=csv", f"data.train_data={root / 'pairs.csv'}", "train.steps=6",
                 "train.batch_size=8", "train.ckpt_every=3", "data.bad_min_samples=1000",
                 "--out", str(root / "run")]) == 0
    return root


def _brute_force(root):
    model, cfg = load_model(root / "run")
    pairs = load_csv_pairs(root / "pairs.csv", label_keys=("category",))
    img = F.normalize(encode_images(model, pairs.images, 32), dim=-1)
    txt = F.normalize(encode_texts(model, get_tokenizer(cfg.model, 32), pairs.captions), dim=-1)
    sims = txt @ img.T
    t2i = sum(int(sims[j].argmax()) == pairs.caption_image[j] for j in range(len(pairs.captions))) / len(pairs.captions)
    i2t = sum(pairs.caption_image[int(sims[:, i].argmax())] == i for i in range(len(pairs.images))) / len(pairs.images)
    return model, cfg, pairs, img, t2i, i2t


def _probe_by_hand(codes, ids, targets):
    """(test accuracy, n train, n test) of a logistic regression (C=1) on the unit codes, split per class by the
    SHA-1 of each id: even positions train, odd ones test."""
    import hashlib

    import numpy as np
    from sklearn.linear_model import LogisticRegression

    train, test = [], []
    for c in sorted(set(targets)):
        members = sorted((i for i, t in enumerate(targets) if t == c), key=lambda i: hashlib.sha1(ids[i].encode())
                         .hexdigest())
        train += members[0::2]
        test += members[1::2]
    train, test = sorted(train), sorted(test)
    x, y = F.normalize(codes.float(), dim=-1).numpy(), np.array(targets)
    clf = LogisticRegression(C=1.0, max_iter=2000, random_state=0).fit(x[train], y[train])
    return float((clf.predict(x[test]) == y[test]).mean()), len(train), len(test)


def test_eval_data_csv_matches_brute_force(labelled, capsys):
    out = labelled / "eval.json"
    code = main(["eval", str(labelled / "run"), "--data", str(labelled / "pairs.csv"), "--label-key", "category",
                 "--out", str(out)])
    assert code == 0 and "wrote" in capsys.readouterr().out
    res = json.loads(out.read_text())
    model, cfg, pairs, img, t2i, i2t = _brute_force(labelled)
    d = res["dataset"]
    assert d["images"] == 24 and d["captions"] == 48 and d["skipped"] == {"missing_file": 1}
    assert res["retrieval"]["text_to_image_R@1"] == pytest.approx(t2i)
    assert res["retrieval"]["image_to_text_R@1"] == pytest.approx(i2t)
    # zero-shot over the category column, by hand: mean of the templates' unit text codes per class
    tok = get_tokenizer(cfg.model, 32)
    classes = sorted(set(pairs.labels["category"]))
    assert d["classes"] == classes and d["label_key"] == "category"
    w = torch.stack([F.normalize(F.normalize(encode_texts(model, tok, [t.format(c) for t in d["templates"]]),
                                             dim=-1).mean(0), dim=0) for c in classes], 1)
    pred = (img @ w).argmax(1)
    acc = float((pred == torch.tensor([classes.index(lab) for lab in pairs.labels["category"]])).float().mean())
    assert res["zeroshot"]["category"]["acc1"] == pytest.approx(acc)
    # the linear probe, by hand: the split (per class, ordered by the SHA-1 of the path, alternating) and
    # scikit-learn's logistic regression on the unit codes
    targets = [classes.index(lab) for lab in pairs.labels["category"]]
    acc, n_train, n_test = _probe_by_hand(img, pairs.ids, targets)
    lp = res["linear_probe"]["category"]
    assert (lp["train"], lp["test"]) == (n_train, n_test) and n_train + n_test == 24
    assert lp["acc1"] == pytest.approx(acc)


def test_probe_split_is_deterministic_and_covers_each_class():
    ids = [f"img/{i}.png" for i in range(10)]
    targets = [0, 0, 0, 1, 1, 1, 1, 2, 2, 2]
    tr, te = probe_split(ids, targets)
    assert (tr, te) == probe_split(ids, targets) and sorted(tr + te) == list(range(10))
    assert {targets[i] for i in tr} == {0, 1, 2} and {targets[i] for i in te} == {0, 1, 2}


def test_eval_data_folder_and_bad_input(labelled, tmp_path, capsys):
    w = World(seed=8, image_size=32, max_objects=1)
    for i in range(12):
        scene = w.scene(i)
        d = tmp_path / "folder" / scene.objects[0].color
        d.mkdir(parents=True, exist_ok=True)
        w.render(scene, i).save(d / f"{i}.png")
    assert main(["eval", str(labelled / "run"), "--data", str(tmp_path / "folder"), "--out",
                 str(tmp_path / "f.json")]) == 0
    res = json.loads((tmp_path / "f.json").read_text())
    assert res["dataset"]["images"] == 12
    # zero-shot and probe by hand: classes are the sorted folder names, images in file order within each
    from PIL import Image

    model, cfg = load_model(labelled / "run")
    folders = sorted(p for p in (tmp_path / "folder").iterdir() if p.is_dir())
    files = [(t, f) for t, d in enumerate(folders) for f in sorted(d.glob("*.png"))]
    codes = encode_images(model, [Image.open(f).convert("RGB") for _, f in files], 32)
    targets = torch.tensor([t for t, _ in files])
    tok = get_tokenizer(cfg.model, 32)
    templates = res["dataset"]["templates"]
    assert res["dataset"]["classes"] == [d.name for d in folders]
    w = torch.stack([F.normalize(F.normalize(encode_texts(model, tok, [t.format(d.name) for t in templates]),
                                             dim=-1).mean(0), dim=0) for d in folders], 1)
    pred = (F.normalize(codes, dim=-1) @ w).argmax(1)
    zs = res["zeroshot"]["class"]
    assert zs["acc1"] == pytest.approx(float((pred == targets).float().mean()))
    recall = [float((pred[targets == c] == c).float().mean()) for c in targets.unique()]
    assert zs["mean_per_class_recall"] == pytest.approx(sum(recall) / len(recall))
    acc, n_train, n_test = _probe_by_hand(codes, [str(i) for i in range(len(files))], targets.tolist())
    lp = res["linear_probe"]["class"]
    assert (lp["train"], lp["test"]) == (n_train, n_test) and lp["acc1"] == pytest.approx(acc)
    capsys.readouterr()
    bad = [(["--data", str(labelled / "pairs.csv"), "--label-key", "nope"], "no label column 'nope'"),
           (["--data", str(tmp_path / "missing.csv")], "no such file"),
           (["--data", str(labelled / "pairs.csv"), "--out", str(tmp_path / "no" / "x.json")], "does not exist"),
           (["--data", str(labelled / "pairs.csv"), "--out", str(tmp_path)], "is a folder")]
    for extra, msg in bad:
        assert main(["eval", str(labelled / "run"), *extra]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and msg in err[0], err


def test_index_build_from_a_csv_keeps_captions(labelled, capsys):
    idx = labelled / "index"
    assert main(["index", "build", str(labelled / "run"), "--out", str(idx), "--data",
                 str(labelled / "pairs.csv")]) == 0
    printed = capsys.readouterr().out
    assert "indexed 24 images" in printed and "missing_file" in printed
    assert main(["index", "search", str(idx), "--text", "a red shape", "-k", "3", "--json"]) == 0
    hits = json.loads(capsys.readouterr().out)["hits"]
    assert len(hits) == 3 and all(h["id"].startswith("img/") and h["caption"] for h in hits)


def test_retrieval_ties_break_to_the_lower_index():
    from sparseclip.eval.retrieval import retrieval_metrics

    # constant codes: every score ties; captions 0,1 belong to image 0, caption 2 to image 1, caption 3 to image 2
    codes = torch.ones(3, 4)
    res = retrieval_metrics(codes, torch.ones(4, 4), [0, 0, 1, 2], ks=(1, 2))
    assert res["text_to_image_R@1"] == pytest.approx(2 / 4)  # only image 0's captions find image 0 first
    assert res["text_to_image_R@2"] == pytest.approx(3 / 4)
    assert res["image_to_text_R@1"] == pytest.approx(1 / 3)  # caption 0 comes first for every image
    assert res["image_to_text_R@2"] == pytest.approx(1 / 3)  # captions 0 and 1 are both image 0's
    # distinct scores: the usual ranks
    img = torch.eye(3)
    txt = torch.tensor([[1.0, 0, 0], [0.9, 0.1, 0], [0, 1.0, 0], [0, 0, 1.0]])
    assert retrieval_metrics(img, txt, [0, 0, 1, 2], ks=(1,))["text_to_image_R@1"] == 1.0


def test_analyze_report_index_on_the_csv(labelled, capsys):
    """analyze --data with two label columns, report, index build --data, index search: numbers by hand."""
    from sklearn.metrics import roc_auc_score

    run, data, ana = labelled / "run", labelled / "pairs.csv", labelled / "analysis_csv"
    assert main(["analyze", str(run), "--data", str(data), "--label-key", "category", "--label-key", "color",
                 "--out", str(ana), "--features", "6", "--no-progress"]) == 0
    summary = json.loads((ana / "summary.json").read_text())
    row = summary["rows"][0]
    model, cfg = load_model(run)
    pairs = load_csv_pairs(data, label_keys=("category", "color"))
    img = encode_images(model, pairs.images, 32).numpy()
    assert row["L0_image"] == pytest.approx(float((img > 0).sum(1).mean()))
    assert any("24 images of" in n and "all its distinct images" in n for n in summary["notes"])
    feats = json.loads((ana / "features.json").read_text())["features"]
    assert feats and all(f["best_concept"].split(":")[0] in ("category", "color") for f in feats)
    for f in feats:  # the best concept's AUROC, recomputed with scikit-learn
        col, value = f["best_concept"].split(":")
        truth = [lab == value for lab in pairs.labels[col]]
        assert f["best_auroc"] == pytest.approx(roc_auc_score(truth, img[:, f["id"]]))
        assert all(c in pairs.captions for c in f["top_captions"])
    assert main(["report", str(ana), "--out", str(labelled / "report")]) == 0
    page = (labelled / "report" / "index.html").read_text()
    shown = [c for f in feats for c in f["top_captions"]]
    assert shown and all(c.endswith(" <b>") for c in shown)  # the first caption of each image, tag and all
    assert html.escape(shown[0]) in page and shown[0] not in page
    idx = labelled / "idx"
    assert main(["index", "build", str(run), "--data", str(data), "--out", str(idx)]) == 0
    assert "indexed 24 images" in capsys.readouterr().out
    assert main(["index", "search", str(idx), "--text", "a red circle", "-k", "5", "--json"]) == 0
    hits = json.loads(capsys.readouterr().out)["hits"]
    q = F.normalize(encode_texts(model, get_tokenizer(cfg.model, 32), ["a red circle"]), dim=-1)
    scores = (q @ F.normalize(torch.as_tensor(img), dim=-1).T)[0]
    order = sorted(range(len(pairs.ids)), key=lambda i: (-float(scores[i]), i))[:5]
    assert [h["id"] for h in hits] == [pairs.ids[i] for i in order]
    assert [h["score"] for h in hits] == pytest.approx([float(scores[i]) for i in order], abs=1e-5)
    assert hits[0]["caption"] == pairs.captions[pairs.caption_image.index(order[0])]


def test_csv_images_are_encoded_in_chunks_not_kept(labelled):
    """eval --data keeps codes, not full-size images: chunked encoding equals encoding everything at once."""
    model, cfg = load_model(labelled / "run")
    whole = load_csv_pairs(labelled / "pairs.csv")
    streamed = load_csv_pairs(labelled / "pairs.csv", encode=lambda ims: encode_images(model, ims, 32), chunk=5)
    assert streamed.images == [] and streamed.ids == whole.ids and streamed.skipped == whole.skipped
    assert torch.allclose(streamed.codes, encode_images(model, whole.images, 32), atol=1e-5)


def _folder(root, classes=("red", "blue"), n=3):
    """An image folder: ``n`` world images in each class subfolder."""
    w = World(seed=9, image_size=32, max_objects=1)
    for c in classes:
        (root / c).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            w.render(w.scene(i), i).save(root / c / f"{i}.png")
    return root


def _one_error(capsys, code, *needles):
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert code == 2 and len(err) == 1 and err[0].startswith("sparseclip: error:"), err
    assert all(n in err[0] for n in needles), err[0]


def test_templates_must_format_with_one_class_name(labelled, tmp_path, capsys):
    """--templates and a folder's templates.txt: each line is checked when read; a bad one is refused in one
    line naming the file and line. {} and {c} (CLIP_benchmark) both stand for the class."""
    run, data = str(labelled / "run"), str(labelled / "pairs.csv")
    cases = [("a photo of a {}.\na {} and {}\n", "line 2", "2 placeholders"),
             ("a {c} {oops}\n", "line 1", "unknown placeholder {oops}"),
             ("\n100% {} {\n", "line 2", "unbalanced braces"),
             ("no class here\n", "line 1", "0 placeholders")]
    t = tmp_path / "t.txt"
    for text, *needles in cases:
        t.write_text(text)
        code = main(["eval", run, "--data", data, "--label-key", "category", "--templates", str(t), "--no-probe"])
        _one_error(capsys, code, f"--templates {t} ", *needles)
    folder = _folder(tmp_path / "folder")
    (folder / "templates.txt").write_text("a {c} photo\n{}\n")
    out = tmp_path / "f.json"
    assert main(["eval", run, "--data", str(folder), "--no-probe", "--out", str(out)]) == 0
    assert json.loads(out.read_text())["dataset"]["templates"] == ["a {} photo", "{}"]
    (folder / "templates.txt").write_text("a {c} photo\na {} {}\n")
    _one_error(capsys, main(["eval", run, "--data", str(folder), "--no-probe"]),
               f"{folder / 'templates.txt'} line 2", "2 placeholders")


def test_analyze_takes_a_repeated_label_column_once(labelled, tmp_path):
    """--label-key category --label-key category: the column is taken once (not refused)."""
    ana = tmp_path / "ana"
    assert main(["analyze", str(labelled / "run"), "--data", str(labelled / "pairs.csv"), "--label-key", "category",
                 "--label-key", "category", "--out", str(ana), "--features", "2", "--n-task", "0", "--no-progress",
                 "--no-dynamics", "--no-heatmaps", "--no-baselines"]) == 0
    feats = json.loads((ana / "features.json").read_text())["features"]
    assert feats and all(f["best_concept"].startswith("category:") for f in feats)
    summary = json.loads((ana / "summary.json").read_text())
    assert any("label columns category;" in n for n in summary["notes"])


def test_folder_eval_counts_unreadable_files_and_needs_two_classes(labelled, tmp_path, capsys):
    import os

    run = str(labelled / "run")
    folder = _folder(tmp_path / "folder")
    (folder / "red" / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    os.mkfifo(folder / "blue" / "pipe.png")
    out = tmp_path / "f.json"
    assert main(["eval", run, "--data", str(folder), "--no-probe", "--out", str(out)]) == 0
    d = json.loads(out.read_text())["dataset"]
    assert d["images"] == 6 and d["skipped"] == {"bad_image": 2}
    one = _folder(tmp_path / "one", classes=("red",))
    _one_error(capsys, main(["eval", run, "--data", str(one), "--no-probe"]), "at least 2 classes", "['red']")
    (one / "blue").mkdir()
    (one / "blue" / "bad.png").write_bytes(b"garbage")  # a second class with no readable image
    _one_error(capsys, main(["eval", run, "--data", str(one), "--no-probe"]), "at least 2 classes", "bad_image")


def test_index_build_takes_the_csv_column_names(labelled, tmp_path, capsys):
    with (labelled / "pairs.csv").open() as f:
        rows = list(csv.reader(f))
    renamed = labelled / "renamed.csv"  # beside the images: paths are relative to the CSV
    with renamed.open("w", newline="") as f:
        csv.writer(f).writerows([["img", "cap", "category", "color"], *rows[1:]])
    idx = tmp_path / "idx"
    assert main(["index", "build", str(labelled / "run"), "--data", str(renamed), "--out", str(idx),
                 "--csv-img-key", "img", "--csv-caption-key", "cap"]) == 0
    assert "indexed 24 images" in capsys.readouterr().out
    meta = json.loads((idx / "index.json").read_text())
    assert meta["ids"][0] == "img/0.png" and meta["captions"][0] == rows[1][1]
