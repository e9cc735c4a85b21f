"""The Milvus backend (embedded Milvus Lite): top-k equals brute force, survives save/append/load, explains."""

import json

import numpy as np
import pytest
from test_index import _codes

from sparseclip.index import SparseIndex, SparseIndexError
from sparseclip.index import milvus as milvus_backend

pytest.importorskip("pymilvus")
pytest.importorskip("milvus_lite")


def _brute_top(items, queries, k):
    x, q = items.toarray().astype(np.float64), queries.toarray().astype(np.float64)
    x /= np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-30)
    q /= np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-30)
    s = q @ x.T
    out = []
    for row in s:
        pos = np.flatnonzero(row > 0)
        out.append(pos[np.argsort(-row[pos], kind="stable")][:k].tolist())
    return out, s


def test_milvus_top_k_equals_brute_force_and_local_engine(tmp_path):
    items, queries = _codes(1200, seed=1), _codes(15, seed=2)
    index = SparseIndex.build(items, ids=[f"i{i}" for i in range(1200)], feature_names={5: "five"})
    index.use_backend("milvus")
    index.save(tmp_path / "idx")
    assert (tmp_path / "idx" / milvus_backend.LITE_DB).is_dir()
    assert json.loads((tmp_path / "idx" / "index.json").read_text())["backend"]["kind"] == "milvus"

    loaded = SparseIndex.load(tmp_path / "idx")
    rows, scores = loaded.search_rows(loaded.prepare_queries(queries), 10)  # ranked by Milvus
    want, s = _brute_top(items, queries, 10)
    assert [r[r >= 0].tolist() for r in rows] == want
    for qi in range(len(want)):
        np.testing.assert_allclose(scores[qi, :len(want[qi])], s[qi, want[qi]], rtol=1e-4)
    local = loaded.search_batch(queries, k=10, engine="numba" if _has_numba() else "scipy")
    via_milvus = loaded.search_batch(queries, k=10, explain=3)
    assert [[h.id for h in q] for q in via_milvus] == [[h.id for h in q] for q in local]
    for h in via_milvus[0]:  # explanations come from the stored codes and add up to Milvus's score
        assert sum(c.contribution for c in h.contributions) + h.rest == pytest.approx(h.score, rel=1e-4)


def test_milvus_append_filters_and_errors(tmp_path):
    items, queries = _codes(700, seed=3), _codes(6, seed=4)
    part = SparseIndex.build(items[:400])
    part.use_backend("milvus", collection="my_codes")
    part.save(tmp_path / "idx")
    part = SparseIndex.load(tmp_path / "idx")
    part.append(items[400:])
    part.save(tmp_path / "idx")  # the database is kept and only the 300 new rows are sent
    again = SparseIndex.load(tmp_path / "idx")
    assert again.ranker().store.count() == 700 and again.ranker().store.collection == "my_codes"
    want, _ = _brute_top(items, queries, 5)
    assert [[h.row for h in q] for q in again.search_batch(queries, k=5)] == want
    # filters are applied by the local engine: same result as without Milvus
    plain = SparseIndex.build(items)
    assert ([[h.row for h in q] for q in again.search_batch(queries, k=5, exclude=[1, 2])]
            == [[h.row for h in q] for q in plain.search_batch(queries, k=5, exclude=[1, 2])])
    with pytest.raises(SparseIndexError, match="collection name"):
        again.use_backend("milvus", collection="bad name!")
    # a collection that lost rows is refused with one line
    meta = json.loads((tmp_path / "idx" / "index.json").read_text())
    meta["backend"]["collection"] = "missing_one"
    (tmp_path / "idx" / "index.json").write_text(json.dumps(meta))
    with pytest.raises(SparseIndexError, match="holds 0 items, the index 700"):
        SparseIndex.load(tmp_path / "idx").search(queries[0])


def test_milvus_unreachable_server_is_one_line(tmp_path):
    index = SparseIndex.build(_codes(20, seed=5))
    index.use_backend("milvus", uri="http://127.0.0.1:9")
    with pytest.raises(SparseIndexError, match="Milvus"):
        index.save(tmp_path / "idx")


def _has_numba():
    from sparseclip.index._topk import numba

    return numba is not None


def test_milvus_k_beyond_its_limit_is_refused(tmp_path):
    index = SparseIndex.build(_codes(30, seed=6))
    index.use_backend("milvus")
    index.save(tmp_path / "idx")
    q = index.prepare_queries(_codes(1, seed=7))
    with pytest.raises(SparseIndexError, match="search locally"):
        index.ranker().store.search(q, 10_000)
    rows, _ = index.search_rows(q, 10_000)  # k beyond the items is cut to the item count first
    assert rows.shape == (1, 30)
