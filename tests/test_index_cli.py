"""`sparseclip index build/search/info` end to end on a micro model, and concepts.concept_features."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from sparseclip import load_config
from sparseclip.cli import main
from sparseclip.index import SparseIndex
from sparseclip.interpret.concepts import concept_activations, concept_features
from sparseclip.model import create_model, get_tokenizer
from sparseclip.model.checkpoint import save_model
from sparseclip.model.embed import encode_texts


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    torch.manual_seed(0)
    cfg = load_config("micro")
    path = tmp_path_factory.mktemp("model") / "ckpt"
    save_model(create_model(cfg.model), cfg, path)
    return path


def _run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_build_search_explain_and_append(ckpt, tmp_path, capsys):
    idx = tmp_path / "idx"
    code, out, _ = _run(capsys, "index", "build", ckpt, "--out", idx, "--n", 24, "--batch-size", 10)
    assert code == 0 and "indexed 24 images" in out
    index = SparseIndex.load(idx)
    assert len(index) == 24 and index.ids[0] == "world:1:0" and index.model["checkpoint"] == str(ckpt.resolve())
    assert index.captions and all(index.captions)

    code, out, _ = _run(capsys, "index", "search", idx, "--text", "a red circle", "-k", 5, "--explain", 3, "--json")
    assert code == 0
    res = json.loads(out)
    hits = res["hits"]
    assert len(hits) == 5 and [h["rank"] for h in hits] == [1, 2, 3, 4, 5]
    assert hits[0]["score"] >= hits[-1]["score"]
    for h in hits:
        assert len(h["contributions"]) == 3
        total = sum(c["contribution"] for c in h["contributions"]) + h["rest"]
        assert total == pytest.approx(h["score"], rel=1e-4)

    # the CLI's text query equals searching the library with the same model's code
    from sparseclip.model.checkpoint import load_model

    model, cfg = load_model(ckpt)
    qcode = encode_texts(model, get_tokenizer(cfg.model), ["a red circle"])
    assert [h.id for h in index.search(qcode, k=5)] == [h["id"] for h in hits]

    code, out, _ = _run(capsys, "index", "build", ckpt, "--out", idx, "--n", 6, "--append")
    assert code == 0 and "[30 items" in out
    assert SparseIndex.load(idx).ids[24:] == [f"world:1:{i}" for i in range(24, 30)]

    code, _, err = _run(capsys, "index", "build", ckpt, "--out", idx, "--n", 6)
    assert code == 2 and "--append" in err

    code, out, _ = _run(capsys, "index", "search", idx, "--text", "a shape", "-k", 30, "--exclude", "circle",
                        "--concept-k", 1, "--json")
    res = json.loads(out)
    banned = res["filters"]["exclude 'circle'"]
    assert len(banned) == 1
    rows = [h["row"] for h in res["hits"]]
    assert np.all(index.item_values(rows, banned) == 0) if rows else True

    code, out, _ = _run(capsys, "index", "info", idx)
    assert code == 0 and "30 items" in out


def test_images_dir_and_image_query(ckpt, tmp_path, capsys):
    imgs = tmp_path / "imgs"
    (imgs / "sub").mkdir(parents=True)
    for i, colour in enumerate(["red", "blue", "green"]):
        Image.new("RGB", (40, 40), colour).save(imgs / "sub" / f"{i}.png")
    (imgs / "broken.jpg").write_bytes(b"not an image")
    code, out, _ = _run(capsys, "index", "build", ckpt, "--out", tmp_path / "idx", "--images-dir", imgs)
    assert code == 0 and "indexed 3 images" in out and "bad_image" in out
    code, out, _ = _run(capsys, "index", "search", tmp_path / "idx", "--image", imgs / "sub" / "1.png", "-k", 1,
                        "--json")
    assert json.loads(out)["hits"][0]["id"].endswith("1.png")


def test_cli_errors_are_one_line(ckpt, tmp_path, capsys):
    code, _, err = _run(capsys, "index", "search", tmp_path / "missing", "--text", "x")
    assert code == 2 and "no index directory" in err and "Traceback" not in err
    (tmp_path / "junk").mkdir()
    code, _, err = _run(capsys, "index", "search", tmp_path / "junk", "--text", "x")
    assert code == 2 and "not a sparseclip index" in err
    code, _, err = _run(capsys, "index", "build", ckpt, "--out", tmp_path / "i", "--images-dir", tmp_path / "junk")
    assert code == 2 and "no images" in err
    SparseIndex.build(np.eye(4, dtype=np.float32)).save(tmp_path / "nomodel")
    code, _, err = _run(capsys, "index", "search", tmp_path / "nomodel", "--text", "x")
    assert code == 2 and "--model" in err
    code, _, err = _run(capsys, "index", "search", tmp_path / "nomodel", "--text", "x", "--model", ckpt)
    assert code == 2 and "512-feature" in err


def test_approximate_backend_chosen_at_build(ckpt, tmp_path, capsys):
    """--backend pruned: its build options stored in index.json and used after loading; plain searches of the index
    are ranked by it (keep 1.0 and more candidates than items: the exact hits)."""
    idx, ref = tmp_path / "pruned", tmp_path / "local"
    code, out, _ = _run(capsys, "index", "build", ckpt, "--out", idx, "--n", 20, "--backend", "pruned",
                        "--pruned-keep", 1.0)
    assert code == 0 and "ranked by pruned (approximate)" in out
    assert json.loads((idx / "index.json").read_text())["backend"] == {"kind": "pruned", "keep": 1.0}
    _run(capsys, "index", "build", ckpt, "--out", ref, "--n", 20)
    index = SparseIndex.load(idx)
    assert index.ranker().engine.keep == 1.0
    q = _text_code(ckpt)
    assert [h.id for h in index.search(q, k=5)] == [h.id for h in SparseIndex.load(ref).search(q, k=5)]
    code, _, err = _run(capsys, "index", "build", ckpt, "--out", tmp_path / "x", "--pruned-keep", 0.5)
    assert code == 2 and "--pruned-keep needs --backend pruned" in err


def test_concept_features_are_the_phrase_code_top_k(ckpt):
    from sparseclip.model.checkpoint import load_model

    model, cfg = load_model(ckpt)
    tok = get_tokenizer(cfg.model)
    code = encode_texts(model, tok, ["red"])[0]
    feats = concept_features(model, tok, "red", k=5)
    assert feats == code.topk(5).indices.tolist()
    diff = code - encode_texts(model, tok, ["a shape"])[0]
    assert concept_features(model, tok, "red", k=4, baseline="a shape") == [
        i for i in diff.topk(4).indices.tolist() if diff[i] > 0]
    mean = encode_texts(model, tok, ["red", "a red thing"]).mean(0)
    assert torch.allclose(concept_activations(model, tok, ["red", "a red thing"]), mean)
    assert concept_features(model, tok, "red", k=5, min_activation=1e9) == []
    with pytest.raises(ValueError):
        concept_features(model, tok, "", k=3)


def test_milvus_backend_build_search_and_info(ckpt, tmp_path, capsys):
    pytest.importorskip("pymilvus")
    pytest.importorskip("milvus_lite")
    idx = tmp_path / "idx"
    code, out, _ = _run(capsys, "index", "build", ckpt, "--out", idx, "--n", 12, "--backend", "milvus")
    assert code == 0 and "ranked by Milvus" in out and (idx / "milvus.db").is_dir()
    code, out, _ = _run(capsys, "index", "build", ckpt, "--out", idx, "--n", 4, "--append")
    assert code == 0 and "[16 items" in out and "ranked by Milvus" in out
    index = SparseIndex.load(idx)
    assert index.ranker().store.count() == 16
    code, out, _ = _run(capsys, "index", "search", idx, "--text", "a red circle", "-k", 4, "--explain", 2, "--json")
    hits = json.loads(out)["hits"]
    local = index.search(_text_code(ckpt), k=4, engine="scipy")
    assert [h["id"] for h in hits] == [h.id for h in local]
    assert all(len(h["contributions"]) == 2 for h in hits)
    code, out, _ = _run(capsys, "index", "info", idx)
    assert "ranked by Milvus (milvus.db, collection sparseclip_idx)" in out
    code, _, err = _run(capsys, "index", "build", ckpt, "--out", tmp_path / "other", "--milvus-uri", "x.db")
    assert code == 2 and "--backend milvus" in err


def _text_code(ckpt):
    from sparseclip.model.checkpoint import load_model

    model, cfg = load_model(ckpt)
    return encode_texts(model, get_tokenizer(cfg.model), ["a red circle"])[0].numpy()


def test_a_finished_build_leaves_no_lock_file(ckpt, tmp_path, capsys):
    """The lock beside the index (``.idx.lock``) is held during a build and removed when it ends, also on an error;
    a writer that holds it meanwhile still refuses a second one."""
    from sparseclip.files.lock import LockedError
    from sparseclip.index.build import _IndexLock

    idx = tmp_path / "idx"
    code, _, _ = _run(capsys, "index", "build", ckpt, "--out", idx, "--n", 4)
    assert code == 0 and not (tmp_path / ".idx.lock").exists()
    code, _, err = _run(capsys, "index", "build", ckpt, "--out", idx, "--n", 4)  # refused: no --append
    assert code == 2 and "--append" in err and not (tmp_path / ".idx.lock").exists()
    with _IndexLock(idx, "index build", beside=True):
        assert (tmp_path / ".idx.lock").exists()
        with pytest.raises(LockedError, match="is in use"):
            _IndexLock(idx, "index build", beside=True).acquire()
    assert not (tmp_path / ".idx.lock").exists()


@pytest.fixture(scope="module")
def named_index(ckpt, tmp_path_factory):
    """A 12-item world index whose features carry names and concepts (as an analysis would give them)."""
    idx = tmp_path_factory.mktemp("named") / "idx"
    assert main(["index", "build", str(ckpt), "--out", str(idx), "--n", "12"]) == 0
    index = SparseIndex.load(idx)
    index.feature_names = {f: ("round circle" if f % 2 else "two things") for f in range(512)}
    index.feature_concepts = {f: ("shape:circle" if f % 3 == 0 else "color:red") for f in range(512) if f % 7}
    index.save(idx)
    return idx


def test_search_prints_what_a_person_can_follow(named_index, capsys):
    """Issue 40: a header saying what was searched and what the score is; each hit with its caption; the share of
    the score the listed features and the concept groups hold; each exclusion with the items it removed."""
    index = SparseIndex.load(named_index)
    code, out, _ = _run(capsys, "index", "search", named_index, "--text", "a red circle", "-k", 3, "--explain", 3)
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "searched 12 items for text 'a red circle': 3 hits"
    assert lines[1].startswith("score = cosine similarity of the query's and the item's codes")
    _, js, _ = _run(capsys, "index", "search", named_index, "--text", "a red circle", "-k", 3, "--explain", 3, "--json")
    res = json.loads(js)
    assert res["score"] == lines[1] and res["searched"] == 12
    for h in res["hits"]:
        head = next(i for i, ln in enumerate(lines) if ln.startswith(f"{h['rank']:3d}  "))
        assert lines[head].endswith(index.captions[h["row"]])  # the caption, not only the id
        held = sum(c["contribution"] for c in h["contributions"]) / h["score"]
        groups = sorted((g for g in h["concept_groups"] if g["concept"] != "(no concept)"),
                        key=lambda g: -g["contribution"])
        assert sum(len(g["features"]) for g in h["concept_groups"]) == h["shared_features"]
        assert lines[head + 1].strip() == (
            f"the 3 features listed hold {100 * held:.0f}% of the score (of {h['shared_features']} shared); "
            f"the 2 largest concept groups hold {100 * sum(g['share'] for g in groups[:3]):.0f}%")
        assert lines[head + 2].strip().startswith(f"f{h['contributions'][0]['feature']} ")
        assert any(ln.strip().startswith("by concept: ") for ln in lines[head:head + 8])

    code, out, _ = _run(capsys, "index", "search", named_index, "--text", "a red circle", "-k", 3, "--exclude",
                        "circle", "--concept-k", 2, "--json")
    effect = json.loads(out)["filter_effects"][0]
    banned = effect["features"]
    having = (index.item_values(range(len(index)), banned) > 0)
    assert effect["removed"] == int(having.any(axis=1).sum()) and effect["of"] == 12
    assert effect["items_per_feature"] == {str(f): int(n) for f, n in zip(banned, having.sum(axis=0), strict=True)}
    assert effect["names_off_topic"] == [f for f in banned if f % 2 == 0]  # "two things" says nothing of circles
    code, out, _ = _run(capsys, "index", "search", named_index, "--text", "a red circle", "-k", 3, "--exclude",
                        "circle", "--concept-k", 2)
    assert f"[exclude 'circle' removed {effect['removed']} of 12 items; active on: f{banned[0]} (" in out


def test_search_html_page_has_thumbnails(named_index, tmp_path, capsys):
    page = tmp_path / "out" / "hits.html"
    code, out, _ = _run(capsys, "index", "search", named_index, "--text", "a <b>red</b> circle", "-k", 4,
                        "--explain", 2, "--html", page)
    assert code == 0 and out.strip().endswith(f"results page: {page}")
    html = page.read_text()
    assert html.count('<article class="hit">') == 4 and html.count('src="data:image/png;base64,') == 4
    assert "a &lt;b&gt;red&lt;/b&gt; circle" in html and "<b>red</b>" not in html
    assert "score = cosine similarity" in html and "the score by concept" in html
    import base64
    import io

    first = html.split('src="data:image/png;base64,')[1].split('"')[0]
    with Image.open(io.BytesIO(base64.b64decode(first))) as im:  # the scene itself, enlarged by whole pixels
        assert im.size == (96, 96) and len(im.getcolors(1 << 16)) > 1
