"""A search backend added from outside the library (issue 25): a brute-force numpy backend, defined and registered
here, builds, saves, loads and searches a real run's index through the CLI and the library entry point, with the
built-in exact backend's hits; an unknown backend is one clear error; only the registry and its entries know
backend names."""

import json
import re
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from sparseclip.cli import main
from sparseclip.index import BACKENDS, SearchBackend, SparseIndex, SparseIndexError
from sparseclip.index.build import BuildOptions, build_index_from_run
from sparseclip.index.query import search_index

INDEX_SRC = Path(__file__).resolve().parents[1] / "src" / "sparseclip" / "index"


class NumpyBrute(SearchBackend):
    """Every item scored: a dense copy of the codes times the query, the best ``k`` by argsort."""

    summary = "brute force over a dense copy of the codes (a test's backend)"
    exact = True
    filters = True
    calls = 0  # searches answered, across instances: proves the index searched through this backend

    def prepare(self) -> None:
        self.dense = self.index.codes.toarray()

    def search(self, queries, k, allowed=None):
        type(self).calls += 1
        scores = np.asarray(queries @ self.dense.T, dtype=np.float32)
        if allowed is not None:
            scores[:, ~allowed] = 0
        order = np.argsort(-scores, axis=1, kind="stable")[:, :k]  # ties by row, as the exact kernels
        top = np.take_along_axis(scores, order, axis=1)
        return np.where(top > 0, order, -1), np.where(top > 0, top, -np.inf).astype(np.float32)


@pytest.fixture
def numpy_brute():
    BACKENDS.register("numpy-brute", NumpyBrute)
    yield "numpy-brute"
    BACKENDS.unregister("numpy-brute")


@pytest.fixture
def run(micro_run):
    """A real (tiny) trained run: the session's shared micro run (conftest), read only."""
    return micro_run


def _cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert code == 0, err
    return out


def test_numpy_backend_searches_end_to_end_like_the_exact_one(run, numpy_brute, tmp_path, capsys):
    ref, idx = tmp_path / "local", tmp_path / "brute"
    _cli(capsys, "index", "build", run, "--out", ref, "--n", 40)
    out = _cli(capsys, "index", "build", run, "--out", idx, "--n", 40, "--backend", numpy_brute)
    assert "indexed 40 images" in out and f"ranked by {numpy_brute}" in out
    assert json.loads((idx / "index.json").read_text())["backend"] == {"kind": numpy_brute}
    assert json.loads((ref / "index.json").read_text())["backend"] is None  # the default's format as before
    assert f"ranked by {numpy_brute}" in _cli(capsys, "index", "info", idx)

    before = NumpyBrute.calls
    for text in ("a red circle", "a small blue square at the top left"):
        brute = json.loads(_cli(capsys, "index", "search", idx, "--text", text, "-k", 5, "--explain", 2, "--json"))
        local = json.loads(_cli(capsys, "index", "search", ref, "--text", text, "-k", 5, "--explain", 2, "--json"))
        assert brute["hits"] and [h["id"] for h in brute["hits"]] == [h["id"] for h in local["hits"]]
        for b, a in zip(brute["hits"], local["hits"], strict=True):
            assert b["score"] == pytest.approx(a["score"], rel=1e-5)
            assert b["contributions"] == a["contributions"]  # explanations come from the stored codes
    assert NumpyBrute.calls == before + 2

    # the library entry point the CLI calls, with a filter (the backend takes the mask) and appended items
    _cli(capsys, "index", "build", run, "--out", idx, "--n", 8, "--append")
    _cli(capsys, "index", "build", run, "--out", ref, "--n", 8, "--append")
    brute_index, local_index = SparseIndex.load(idx), SparseIndex.load(ref)
    assert brute_index.backend == numpy_brute and len(brute_index) == 48
    feature = int(np.bincount(local_index.codes.indices, minlength=local_index.n_features).argmax())
    got = search_index(brute_index, text="a green triangle", k=6, exclude_features=[feature])
    want = search_index(local_index, text="a green triangle", k=6, exclude_features=[feature])
    assert got.hits and [h.id for h in got.hits] == [h.id for h in want.hits]
    assert NumpyBrute.calls == before + 3

    # the library's build call with the backend in its options
    built = build_index_from_run(run, tmp_path / "lib", BuildOptions(n=40, backend=numpy_brute))
    q = built.index.prepare_queries(local_index.codes[:3].tocsr())
    rows, scores = built.index.search_rows(q, 7)  # through its backend
    exact_rows, exact_scores = built.index.search_rows(q, 7, engine="scipy")  # an exact kernel named: local
    assert np.array_equal(rows, exact_rows) and np.allclose(scores, exact_scores, rtol=1e-5)


def test_unknown_backend_is_one_clear_error(numpy_brute, tmp_path, capsys):
    with pytest.raises(SparseIndexError, match=r"unknown search backend 'nope' \(registered: local, .*numpy-brute"):
        BuildOptions(backend="nope").check()
    index = SparseIndex.build(sp.random(30, 20, density=0.3, random_state=0, format="csr"))
    with pytest.raises(SparseIndexError, match="unknown search backend 'nope'"):
        index.use_backend("nope")
    with pytest.raises(SystemExit):  # the command line offers the registered names only
        main(["index", "build", str(tmp_path), "--out", str(tmp_path / "x"), "--backend", "nope"])
    assert "invalid choice: 'nope'" in capsys.readouterr().err

    index.use_backend(numpy_brute)
    index.save(tmp_path / "idx")
    assert SparseIndex.load(tmp_path / "idx").backend == numpy_brute
    BACKENDS.unregister(numpy_brute)  # an index saved with a backend that is not registered (any more)
    with pytest.raises(SparseIndexError, match=r"index.json: unknown backend \{'kind': 'numpy-brute'\}"):
        SparseIndex.load(tmp_path / "idx")


def test_only_the_registry_and_its_entries_know_backend_names():
    entries = {"backends.py", "milvus.py", "approx.py"}  # the registry and the modules of its entries
    names = "|".join(re.escape(n) for n in BACKENDS.names())
    compare = re.compile(rf"""(==|!=|\bin)\s*\(?\s*["']({names})["']|["']({names})["']\s*(==|!=)""")
    by_type = re.compile(r"isinstance\([^)]*(Search|Store|Backend)\b")
    sources = sorted(INDEX_SRC.glob("*.py")) + [INDEX_SRC.parent / "cli" / "index.py"]
    found = [f"{p.name}:{i}: {line.strip()}" for p in sources if p.name not in entries
             for i, line in enumerate(p.read_text().splitlines(), 1) if compare.search(line) or by_type.search(line)]
    assert not found, found
    assert {"local", "milvus", "pruned", "seismic"} <= set(BACKENDS.names())
