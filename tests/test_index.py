"""SparseIndex: exact search equals brute force, explanations sum to the score, save/load, append, filters."""

import json

import numpy as np
import pytest
import scipy.sparse as sp

from sparseclip.index import SparseIndex, SparseIndexError, approx
from sparseclip.index._topk import numba as _numba

ENGINES = ["scipy"] + (["numba"] if _numba is not None else [])


def _codes(n, d=300, density=0.04, seed=0):
    """Random non-negative sparse codes with distinct (tie-free) values."""
    m = sp.random(n, d, density=density, format="csr", dtype=np.float32, random_state=seed)
    m.data = np.random.default_rng(seed).uniform(0.1, 2.0, m.nnz).astype(np.float32)
    return m


def _brute(items, queries, normalize):
    x, q = items.toarray().astype(np.float64), queries.toarray().astype(np.float64)
    if normalize:
        x /= np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-30)
        q /= np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-30)
    return q @ x.T


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("normalize", [True, False])
def test_exact_search_equals_brute_force(engine, normalize):
    items, queries = _codes(1500, seed=1), _codes(25, seed=2)
    index = SparseIndex.build(items, normalize=normalize)
    hits = index.search_batch(queries, k=7, engine=engine)
    scores = _brute(items, queries, normalize)
    for qi, qhits in enumerate(hits):
        positive = np.flatnonzero(scores[qi] > 0)
        want = positive[np.argsort(-scores[qi, positive], kind="stable")][:7]
        assert [h.row for h in qhits] == want.tolist()
        np.testing.assert_allclose([h.score for h in qhits], scores[qi, want], rtol=1e-5)
        assert [h.rank for h in qhits] == list(range(1, len(qhits) + 1))


def test_engines_agree_and_single_matches_batch():
    items, queries = _codes(800, seed=3), _codes(6, seed=4)
    index = SparseIndex.build(items)
    batch = index.search_batch(queries, k=5)
    for qi in range(6):
        single = index.search(queries[qi].toarray().ravel(), k=5)
        assert [(h.row, round(h.score, 5)) for h in single] == [(h.row, round(h.score, 5)) for h in batch[qi]]
        for engine in ENGINES:
            other = index.search(queries[qi], k=5, engine=engine)
            assert [h.row for h in other] == [h.row for h in single]


def test_no_shared_feature_gives_no_hit_and_k_larger_than_matches():
    items = sp.csr_matrix(np.array([[1, 0, 0, 0], [0, 2, 0, 0], [0, 1, 1, 0]], dtype=np.float32))
    index = SparseIndex.build(items, ids=["a", "b", "c"], normalize=False)
    assert index.search(np.array([0, 0, 0, 5.0]), k=3) == []
    hits = index.search(np.array([0, 1.0, 0, 0]), k=10)
    assert [(h.id, h.score) for h in hits] == [("b", 2.0), ("c", 1.0)]


def test_explanations_sum_to_the_score_and_are_named():
    items, queries = _codes(600, seed=5), _codes(5, seed=6)
    names = {j: f"feature {j}" for j in range(0, 300, 2)}
    index = SparseIndex.build(items, feature_names=names)
    for qhits in index.search_batch(queries, k=5, explain=-1):
        for h in qhits:
            assert h.contributions and h.rest == 0.0
            assert sum(c.contribution for c in h.contributions) == pytest.approx(h.score, rel=1e-5)
            for c in h.contributions:
                assert c.contribution == pytest.approx(c.query_value * c.item_value, rel=1e-6)
                assert c.name == names.get(c.feature)
            contrib = [c.contribution for c in h.contributions]
            assert contrib == sorted(contrib, reverse=True)
    # the top-2 view keeps the total in `rest`
    h = index.search(queries[0], k=1, explain=2)[0]
    assert len(h.contributions) <= 2
    assert sum(c.contribution for c in h.contributions) + h.rest == pytest.approx(h.score, rel=1e-5)
    again = index.explain(queries[0], h.row)
    assert again.score == pytest.approx(h.score, rel=1e-5)


def test_save_load_round_trip(tmp_path):
    items, queries = _codes(400, seed=7), _codes(4, seed=8)
    index = SparseIndex.build(items, ids=[f"img_{i}.png" for i in range(400)], feature_names={3: "red"},
                              model={"checkpoint": "runs/x/final"})
    index.save(tmp_path / "idx")
    loaded = SparseIndex.load(tmp_path / "idx")
    assert len(loaded) == 400 and loaded.n_features == 300 and loaded.nnz == index.nnz
    assert loaded.ids == index.ids and loaded.feature_names == {3: "red"}
    assert loaded.model == {"checkpoint": "runs/x/final"} and loaded.normalize
    assert (loaded.codes != index.codes).nnz == 0
    a, b = index.search_batch(queries, k=5), loaded.search_batch(queries, k=5)
    assert [[h.id for h in q] for q in a] == [[h.id for h in q] for q in b]
    meta = json.loads((tmp_path / "idx" / "index.json").read_text())
    assert meta["format"] == "sparseclip-index" and meta["n_items"] == 400


def test_append_equals_building_at_once(tmp_path):
    items, queries = _codes(900, seed=9), _codes(8, seed=10)
    whole = SparseIndex.build(items, ids=[f"i{i}" for i in range(900)])
    part = SparseIndex.build(items[:500], ids=[f"i{i}" for i in range(500)])
    part.save(tmp_path / "idx")
    part = SparseIndex.load(tmp_path / "idx")
    part.append(items[500:].toarray(), ids=[f"i{i}" for i in range(500, 900)])
    assert len(part) == 900 and part.ids == whole.ids
    a, b = whole.search_batch(queries, k=6), part.search_batch(queries, k=6)
    assert [[h.id for h in q] for q in a] == [[h.id for h in q] for q in b]
    with pytest.raises(SparseIndexError, match="features"):
        part.append(np.ones((2, 7), np.float32))
    with pytest.raises(SparseIndexError, match="ids"):
        part.append(items[:2], ids=["only one"])


def test_filters_require_exclude_and_boost():
    rng = np.random.default_rng(11)
    items = (rng.random((500, 40)) < 0.2) * rng.uniform(0.5, 1.5, (500, 40))
    query = rng.uniform(0, 1, 40)
    index = SparseIndex.build(items)
    hits = index.search(query, k=500, require=[3, 5], exclude=[7])
    rows = [h.row for h in hits]
    want = np.flatnonzero((items[:, 3] > 0) & (items[:, 5] > 0) & (items[:, 7] == 0))
    assert sorted(rows) == want.tolist()
    any_rows = {h.row for h in index.search(query, k=500, require_any=[3, 5])}
    assert any_rows == set(np.flatnonzero((items[:, 3] > 0) | (items[:, 5] > 0)).tolist())
    boosted = index.search(query, k=20, boost={9: 5.0})
    assert all(items[h.row, 9] > 0 for h in boosted)
    penalised = index.search(query, k=20, boost={9: -5.0})
    assert all(items[h.row, 9] == 0 for h in penalised)
    with pytest.raises(SparseIndexError, match="feature ids"):
        index.search(query, require=[40])


def test_bad_inputs_and_bad_index_dirs(tmp_path):
    with pytest.raises(SparseIndexError, match="non-negative"):
        SparseIndex.build(np.array([[1.0, -1.0]]))
    with pytest.raises(SparseIndexError, match="NaN"):
        SparseIndex.build(np.array([[1.0, np.nan]]))
    index = SparseIndex.build(np.eye(3, dtype=np.float32))
    with pytest.raises(SparseIndexError, match="features"):
        index.search(np.ones(4))
    with pytest.raises(SparseIndexError, match="no index directory"):
        SparseIndex.load(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(SparseIndexError, match="not a sparseclip index"):
        SparseIndex.load(tmp_path / "empty")
    index.save(tmp_path / "idx")
    (tmp_path / "idx" / "codes.npz").write_bytes(b"not a zip")
    with pytest.raises(SparseIndexError, match="not a readable sparse matrix"):
        SparseIndex.load(tmp_path / "idx")
    index.save(tmp_path / "idx2")
    meta = json.loads((tmp_path / "idx2" / "index.json").read_text())
    meta["ids"] = meta["ids"][:2]
    (tmp_path / "idx2" / "index.json").write_text(json.dumps(meta))
    with pytest.raises(SparseIndexError, match="ids"):
        SparseIndex.load(tmp_path / "idx2")
    (tmp_path / "idx2" / "index.json").write_text("{not json")
    with pytest.raises(SparseIndexError, match="not valid JSON"):
        SparseIndex.load(tmp_path / "idx2")
    # an npz holding a pickled object array is refused, never unpickled
    np.savez(tmp_path / "idx" / "codes.npz", format=np.array([object()], dtype=object))
    index.save(tmp_path / "idx3")
    (tmp_path / "idx3" / "codes.npz").write_bytes((tmp_path / "idx" / "codes.npz").read_bytes())
    with pytest.raises(SparseIndexError, match="not a readable sparse matrix"):
        SparseIndex.load(tmp_path / "idx3")


@pytest.mark.skipif(not approx.available(), reason="pyseismic-lsr not installed")
def test_approximate_search_recall():
    items, queries = _codes(3000, d=500, density=0.03, seed=12), _codes(20, d=500, density=0.03, seed=13)
    index = SparseIndex.build(items)
    exact = index.search_batch(queries, k=10)
    index.build_approximate("seismic")
    fuzzy = index.search_batch(queries, k=10, approximate=True)
    recall = np.mean([len({h.row for h in a} & {h.row for h in b}) / max(len(a), 1)
                      for a, b in zip(exact, fuzzy, strict=True)])
    assert recall >= 0.8
    with pytest.raises(SparseIndexError, match="filters"):
        index.search(queries[0], approximate=True, exclude=[1])


@pytest.mark.parametrize("numba_engine", [True, False])
def test_pruned_approximate_search_scores_exactly_and_keeps_recall(monkeypatch, numba_engine):
    from sparseclip.index import _topk

    if not numba_engine:
        monkeypatch.setattr(_topk, "numba", None)
    elif _topk.numba is None:
        pytest.skip("numba not installed")
    items, queries = _codes(3000, d=200, density=0.05, seed=14), _codes(20, d=200, density=0.05, seed=15)
    index = SparseIndex.build(items)
    q = index.prepare_queries(queries)
    exact_rows, exact_scores = index.search_rows(q, 10, engine="scipy")
    full = approx.PrunedSearch(index.codes, keep=1.0)  # nothing pruned, every item a candidate: the exact result
    for batch in (q, q[:1]):
        rows, scores = full.search(batch, 10, candidates=3000)
        assert np.array_equal(rows, exact_rows[:batch.shape[0]])
        np.testing.assert_allclose(scores, exact_scores[:batch.shape[0]], rtol=1e-6)
    pruned = approx.PrunedSearch(index.codes, keep=0.2, min_keep=10)
    assert pruned.pruned_nnz < 0.3 * index.nnz
    rows, scores = pruned.search(q, 10, candidates=50)
    brute = _brute(items, queries, True)
    for qi in range(20):  # every returned score is the item's true score, best first
        keep = rows[qi] >= 0
        np.testing.assert_allclose(scores[qi][keep], brute[qi, rows[qi][keep]], rtol=1e-5)
        assert np.all(np.diff(scores[qi][keep]) <= 0)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(rows, exact_rows, strict=True)])
    assert 0.7 <= recall < 1.0  # pruned enough to miss some, not so much it misses most
    fewer = pruned.search(q, 10, candidates=10)[0]  # fewer candidates, lower recall: the knob works
    assert np.mean([len(set(a) & set(b)) / 10 for a, b in zip(fewer, exact_rows, strict=True)]) < recall
    allowed = np.zeros(len(index), bool)
    allowed[::3] = True
    rows, _ = pruned.search(q, 10, candidates=50, allowed=allowed)
    assert (rows >= 0).any() and np.all(allowed[rows[rows >= 0]])
    with pytest.raises(SparseIndexError, match="keep"):
        approx.PrunedSearch(index.codes, keep=0)
    with pytest.raises(SparseIndexError, match="features"):
        pruned.search(q[:, :100], 10)


def test_approximate_search_needs_no_extra_package_and_takes_filters():
    items, queries = _codes(2000, d=300, density=0.05, seed=16), _codes(5, d=300, density=0.05, seed=17)
    index = SparseIndex.build(items)
    exact = index.search_batch(queries, k=5, exclude=[1])
    fuzzy = index.search_batch(queries, k=5, exclude=[1], approximate=True)
    assert isinstance(index._approx, approx.PrunedBackend)
    assert isinstance(index._approx.engine, approx.PrunedSearch)
    hit_rows = {h.row for hits in fuzzy for h in hits}
    assert hit_rows and not hit_rows & set(index._items_with(1, 0.0).tolist())
    recall = np.mean([len({h.row for h in a} & {h.row for h in b}) / max(len(a), 1)
                      for a, b in zip(exact, fuzzy, strict=True)])
    assert recall >= 0.6
    with pytest.raises(SparseIndexError, match="unknown approximate engine"):
        index.build_approximate("nope")
    index.append(items[:10])
    assert index._approx is None  # appended items would be missing from it: rebuilt on the next search


@pytest.mark.skipif(_numba is None, reason="numba not installed")
def test_blocked_kernels_equal_the_plain_ones(monkeypatch):
    """The blocked paths (large indexes) give exactly the scores of the per-query kernel, with a filter, for a
    single query and for batches split into chunks."""
    from sparseclip.index import _topk

    items, queries = _codes(3000, d=120, density=0.05, seed=21), _codes(7, d=120, density=0.05, seed=22)
    index = SparseIndex.build(items)
    q = index.prepare_queries(queries)
    allowed = np.random.default_rng(0).random(len(index)) < 0.7
    plain = [index.search_rows(q, 10), index.search_rows(q[:1], 10), index.search_rows(q, 10, allowed=allowed)]
    monkeypatch.setattr(_topk, "BLOCK", 256)  # 3000 items: 12 blocks of 256 (the last one short)
    monkeypatch.setattr(_topk, "QUERY_CHUNK", 3)  # 7 queries: chunks of 3, 3 and a single one
    assert _topk.block_size(len(index)) == 256
    blocked = [index.search_rows(q, 10), index.search_rows(q[:1], 10), index.search_rows(q, 10, allowed=allowed)]
    for (r0, s0), (r1, s1) in zip(plain, blocked, strict=True):
        assert np.array_equal(r0, r1) and np.array_equal(s0, s1)
    assert np.all(allowed[blocked[2][0][blocked[2][0] >= 0]])
    with pytest.raises(ValueError, match="one bool per item"):  # the kernels would read past a short mask
        index.search_rows(q, 10, allowed=allowed[:-1])
    monkeypatch.setattr(_topk, "MAX_BLOCKS", 4)  # fewer, larger blocks for larger indexes
    assert _topk.block_size(len(index)) == 750
    assert np.array_equal(index.search_rows(q, 10)[0], plain[0][0])
