"""Sparse search vs dense search, in one run: build time, memory, queries per second, approximate recall.

Synthetic Sparse CLIP-like codes: 16,384 features, each item with 0.5-2% active (uniform), features drawn
with a power-law frequency (rank r has weight (r + offset)^-alpha, so a few features are active in ~30% of
items and most in well under 1%), lognormal positive values. Queries come from the same distribution.
The dense reference is faiss ``IndexFlatIP`` (exact) on random unit 512-d vectors of the same count.

With ``--run RUN`` the same table is made on real codes: RUN's sparse codes of its cached training images
(items; RUN needs a ``features.safetensors``, as frozen-tower runs keep) and of its captions (queries, text to
image), at their measured density, plus larger sets resampled from their per-feature statistics
(``--run-sizes``); ``--dense-run`` gives the dense side the embeddings of a dense run of the same images.
``--milvus`` adds Milvus Lite (``sparseclip[milvus]``) as a row.

    python benchmarks/bench_search.py --sizes 20000,100000,1000000 --json docs/search/bench.json \
        --write-doc docs/search.md
    python benchmarks/bench_search.py --render docs/search/bench.json --write-doc docs/search.md  # no measuring

Timings are the best of ``--reps`` interleaved repetitions (the CPU is shared), so compare ratios within a run.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from sparseclip.files.atomic import write_text_atomic
from sparseclip.index import SparseIndex, approx, default_engine

sys.path.insert(0, str(Path(__file__).resolve().parent))  # its helper modules, also when loaded from a file
from _blas import blas_libraries, describe, generic_kernels, removed, unthrottle  # noqa: E402

try:
    import faiss
except ImportError:  # pragma: no cover
    faiss = None
try:
    from sparse_dot_topn import sp_matmul_topn
except ImportError:  # pragma: no cover
    sp_matmul_topn = None


def synthetic_codes(n: int, d: int = 16384, lo: float = 0.005, hi: float = 0.02, alpha: float = 1.0,
                    offset: float = 100.0, seed: int = 0, chunk: int = 50_000) -> sp.csr_matrix:
    """``n`` non-negative sparse codes (CSR float32) with a power-law feature frequency."""
    rng = np.random.default_rng(seed)
    weights = (np.arange(d, dtype=np.float64) + offset) ** -alpha
    cdf = np.cumsum(weights / weights.sum())
    perm = np.random.default_rng(12345).permutation(d)  # the same features are frequent in items and queries
    draws_per_row = rng.integers(int(lo * d), int(hi * d) + 1, size=n)
    cap = int(draws_per_row.sum())  # an upper bound on nnz (repeated draws are dropped): fill in place, no copies
    indices = np.empty(cap, np.int32)
    indptr = np.zeros(n + 1, np.int64)
    nnz = 0
    for s in range(0, n, chunk):
        m = min(chunk, n - s)
        rows = np.repeat(np.arange(m, dtype=np.int64), draws_per_row[s:s + m])
        feats = perm[np.minimum(np.searchsorted(cdf, rng.random(rows.size)), d - 1)]
        key = rows * d + feats
        key.sort()
        key = key[np.r_[True, key[1:] != key[:-1]]]  # drop repeated draws
        indices[nnz:nnz + key.size] = key % d
        indptr[s + 1:s + m + 1] = nnz + np.cumsum(np.bincount(key // d, minlength=m))
        nnz += key.size
    values = rng.lognormal(0.0, 0.75, nnz).astype(np.float32)
    return sp.csr_matrix((values, indices[:nnz], indptr), shape=(n, d))


def best_time(fn, reps: int) -> float:
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def recall_at(exact: np.ndarray, got: np.ndarray) -> float:
    return float(np.mean([len(set(a[a >= 0]) & set(b[b >= 0])) / max((a >= 0).sum(), 1)
                          for a, b in zip(exact, got, strict=True)]))


def bench_size(n: int, args, data: dict | None = None) -> tuple[list[dict], dict]:
    """One size: ``data`` (``codes``, ``queries``, ``set``, optional dense ``xb``/``xq``) or synthetic codes."""
    k, reps = args.k, args.reps
    rows: list[dict] = []
    t = time.perf_counter()
    if data is None:
        codes = synthetic_codes(n, args.dim, args.density_min, args.density_max, args.alpha, args.offset, seed=1)
        queries = synthetic_codes(args.queries, args.dim, args.density_min, args.density_max, args.alpha,
                                  args.offset, seed=2)
        data = {"set": "synthetic"}
    else:
        codes, queries = data.pop("codes"), data.pop("queries")
    gen_s = data.pop("gen_s", time.perf_counter() - t)
    freq = np.bincount(codes.indices, minlength=codes.shape[1]) / n
    t = time.perf_counter()
    index = SparseIndex.build(codes)
    build_s = time.perf_counter() - t
    del codes
    gc.collect()
    q = index.prepare_queries(queries)
    touched = np.diff(index.codes.indptr)[q.indices].sum() / q.shape[0]
    d = index.n_features
    stats = {"n": n, "set": data["set"], "gen_s": gen_s, "l0": index.nnz / n, "l0_pct": 100 * index.nnz / n / d,
             "d": d, "q_l0": q.nnz / q.shape[0],
             "max_freq": float(freq.max()), "median_freq": float(np.median(freq)), "touched": float(touched)}
    singles = [q[i] for i in range(min(args.single, q.shape[0]))]
    engine = args.engine or default_engine()
    index.search_rows(q[:2], k, engine=engine)  # compile / warm up the batch and the single-query kernels
    index.search_rows(q[:1], k, engine=engine)

    def single(search, qs):
        return lambda: [search(x) for x in qs]

    exact_rows, _ = index.search_rows(q, k, engine=engine)
    measure = {
        f"sparse exact ({engine})": (
            lambda: index.search_rows(q, k, engine=engine),
            single(lambda x: index.search_rows(x, k, engine=engine), singles)),
    }
    if engine != "scipy" and args.scipy:
        nb = min(q.shape[0], args.single)
        measure["sparse exact (scipy)"] = (lambda: index.search_rows(q[:nb], k, engine="scipy"),
                                           single(lambda x: index.search_rows(x, k, engine="scipy"), singles))
    built = {name: (build_s, index.nbytes) for name in measure}
    batch_n = {name: q.shape[0] for name in measure}
    if "sparse exact (scipy)" in batch_n:
        batch_n["sparse exact (scipy)"] = min(q.shape[0], args.single)
    if sp_matmul_topn is not None and args.sdt:
        post_t = index.codes.T  # CSR view (features x items): what sparse_dot_topn multiplies
        name = "sparse_dot_topn (batch only)"
        measure[name] = (lambda: sp_matmul_topn(q, post_t, top_n=k, sort=True, n_threads=os.cpu_count()), None)
        built[name] = (build_s, index.nbytes)
        batch_n[name] = q.shape[0]
    recall: dict[str, float] = {}
    if approx.available() and args.approx and n <= args.approx_max_n:
        name = "sparse approx (seismic)"
        t = time.perf_counter()
        index.build_approximate("seismic", n_postings=args.seismic_postings, centroid_fraction=args.seismic_centroids)
        built[name] = (time.perf_counter() - t, None)
        qp = {"query_cut": args.seismic_query_cut, "heap_factor": args.seismic_heap_factor}
        measure[name] = (lambda: index.search_rows(q, k, approximate=True, **qp),
                         single(lambda x: index.search_rows(x, k, approximate=True, **qp), singles))
        batch_n[name] = q.shape[0]
        recall[name] = recall_at(exact_rows, index.search_rows(q, k, approximate=True, **qp)[0])
    for point in [x for x in args.pruned.split(",") if x]:  # the own approximate engine: a recall-vs-QPS curve
        keep, min_keep, cand = point.split(":")
        name = f"sparse approx (own pruning: keep {float(keep):.0%}, min {min_keep}, {cand} candidates)"
        t = time.perf_counter()
        eng = approx.PrunedSearch(index.codes, keep=float(keep), min_keep=int(min_keep))
        built[name] = (time.perf_counter() - t, eng.nbytes)  # all it reads: pruned lists + forward codes
        eng.search(q[:2], k, int(cand))
        eng.search(q[:1], k, int(cand))

        def pruned_batch(eng=eng, c=int(cand)):
            return eng.search(q, k, c)
        measure[name] = (pruned_batch, single(lambda x, eng=eng, c=int(cand): eng.search(x, k, c), singles))
        batch_n[name] = q.shape[0]
        recall[name] = recall_at(exact_rows, pruned_batch()[0])
    milvus_cleanup = None
    if args.milvus and n <= args.milvus_max_n:
        nm = min(args.milvus_queries, q.shape[0])
        milvus_cleanup = _milvus_rows(index, q[:nm], singles[:max(1, nm // 5)], k, built, measure, batch_n, recall,
                                      exact_rows[:nm], single)
    dense = None
    if faiss is not None:
        rng = np.random.default_rng(3)
        real_dense = "xb" in data
        dim = data["xb"].shape[1] if real_dense else data.get("dense_dim", args.dense_dim)
        dense_label = f"{dim}-d, {data.get('dense_label', 'dense run') if real_dense else 'random'}"
        if real_dense:
            xq = data["xq"][:q.shape[0]]
        else:
            xq = rng.standard_normal((q.shape[0], dim), dtype=np.float32)
            faiss.normalize_L2(xq)
        dense = faiss.IndexFlatIP(dim)
        add_s = 0.0
        for s in range(0, n, 100_000):  # in chunks, to keep one copy of the vectors in memory
            if real_dense:
                xb = data["xb"][s:s + 100_000]
            else:
                xb = rng.standard_normal((min(100_000, n - s), dim), dtype=np.float32)
                faiss.normalize_L2(xb)
            t = time.perf_counter()
            dense.add(xb)
            add_s += time.perf_counter() - t
        del xb
        nd = min(q.shape[0], args.dense_batch)
        dense_singles = [xq[i:i + 1] for i in range(min(args.dense_single, len(singles)))]

        def threads(t, fn):
            def run():
                faiss.omp_set_num_threads(t)
                return fn()
            return run

        if args.hnsw and n <= args.hnsw_max_n:
            _hnsw_rows(args, dense, xq, nd, dense_singles, k, built, measure, batch_n, recall, threads, dense_label)

        # faiss tuned as its users tune it: its OpenMP thread count chosen per mode (one thread is often faster
        # for single queries, all cores for batches); each count is measured, the best kept
        for t in sorted({1, os.cpu_count() or 1}):
            name = f"dense exact (faiss IndexFlatIP, {dense_label}) [{t} thread{'s' if t > 1 else ''}]"
            built[name] = (add_s, dense.ntotal * dim * 4)
            measure[name] = (threads(t, lambda: dense.search(xq[:nd], k)),
                             threads(t, lambda: [dense.search(x, k) for x in dense_singles]))
            batch_n[name] = nd
    times: dict[str, list[float]] = {name: [float("inf"), float("inf")] for name in measure}
    for _ in range(reps):  # interleave methods so load changes hit all of them
        for name, (batch_fn, single_fn) in measure.items():
            times[name][0] = min(times[name][0], best_time(batch_fn, 1))
            if single_fn is not None:
                times[name][1] = min(times[name][1], best_time(single_fn, 1))
    if faiss is not None:
        faiss.omp_set_num_threads(os.cpu_count() or 1)
    if milvus_cleanup is not None:
        milvus_cleanup()
    for name, (batch_t, single_t) in times.items():
        n_single = len(singles) if not name.startswith("dense") else min(args.dense_single, len(singles))
        if "Milvus" in name:
            n_single = max(1, min(args.milvus_queries, len(singles)) // 5)
        # (recall: exact methods 1.0; approximate ones as measured)
        rows.append({"n": n, "set": data["set"], "method": name, "build_s": built[name][0], "bytes": built[name][1],
                     "batch_qps": batch_n[name] / batch_t,
                     "single_qps": n_single / single_t if np.isfinite(single_t) else None,
                     "recall": recall.get(name, 1.0 if name.startswith(("sparse exact", "dense")) else None)})
    dense_rows = [r for r in rows if r["method"].startswith("dense exact")]
    if dense_rows:  # the tuned baseline: per mode, the best thread count
        b = max(dense_rows, key=lambda r: r["batch_qps"])
        s1 = max(dense_rows, key=lambda r: r["single_qps"] or 0)
        rows.append({**b, "method": f"dense exact (faiss IndexFlatIP, {dense_label}), tuned: batch "
                     f"{b['method'].split('[')[1].rstrip(']')}, single {s1['method'].split('[')[1].rstrip(']')}",
                     "single_qps": s1["single_qps"], "tuned": True})
    return rows, stats


def _milvus_rows(index, q, singles, k, built, measure, batch_n, recall, exact_rows, single):
    """Milvus Lite (embedded, in a temporary folder) over the same normalised codes: insert + load time as the
    build, warm queries timed; returns what closes and removes it after timing."""
    from sparseclip.index import milvus as mv

    if not mv.available():
        print("pymilvus / milvus-lite not installed: no Milvus row", flush=True)
        return None
    folder = tempfile.mkdtemp(prefix="bench_milvus_")
    store = mv.MilvusStore(os.path.join(folder, mv.LITE_DB), "bench")
    store.create()
    t = time.perf_counter()
    store.insert(index.codes.tocsr())
    store.load()
    name = "sparse exact (Milvus Lite, SPARSE_INVERTED_INDEX)"
    built[name] = (time.perf_counter() - t, None)
    got = store.search(q, k)[0]  # also warms it
    store.search(q[:1], k)
    measure[name] = (lambda: store.search(q, k), single(lambda x: store.search(x, k), singles))
    batch_n[name] = q.shape[0]
    recall[name] = recall_at(exact_rows, got)

    def cleanup() -> None:
        store.close()
        shutil.rmtree(folder, ignore_errors=True)
    return cleanup


def _hnsw_rows(args, flat, xq, nd, singles, k, built, measure, batch_n, recall, threads, dense_label) -> None:
    """faiss HNSW (M=32, efConstruction=200) on the same vectors, efSearch raised until recall@k against the flat
    index reaches --hnsw-recall (the smallest such efSearch is timed)."""
    xb = flat.reconstruct_n(0, flat.ntotal)
    h = faiss.IndexHNSWFlat(flat.d, 32, faiss.METRIC_INNER_PRODUCT)
    h.hnsw.efConstruction = 200
    faiss.omp_set_num_threads(os.cpu_count() or 1)
    t = time.perf_counter()
    h.add(xb)
    build = time.perf_counter() - t
    del xb
    exact = flat.search(xq[:nd], k)[1]
    got_ef, got_rec = None, 0.0
    for ef in (16, 32, 64, 128, 256, 512, 1024, 2048):
        h.hnsw.efSearch = ef
        got_rec = recall_at(exact, h.search(xq[:nd], k)[1])
        got_ef = ef
        if got_rec >= args.hnsw_recall:
            break
    name = f"dense approx (faiss HNSW32, {dense_label}, efSearch {got_ef})"
    built[name] = (build, None)
    measure[name] = (threads(os.cpu_count() or 1, lambda: h.search(xq[:nd], k)),
                     threads(1, lambda: [h.search(x, k) for x in singles]))
    batch_n[name] = nd
    recall[name] = got_rec


def fmt_table(rows: list[dict]) -> str:
    """Ratios against the TUNED dense baseline (faiss at its best thread count per mode)."""
    dense = {(r["set"], r["n"]): r for r in rows if r.get("tuned")}
    out = ["| items | method | build (s) | memory (MB) | batch QPS | single QPS | recall@10 | "
           "batch / dense | single / dense |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        d = dense.get((r["set"], r["n"]))
        bx = f"{r['batch_qps'] / d['batch_qps']:.1f}x" if d else "-"
        sx = f"{r['single_qps'] / d['single_qps']:.1f}x" if d and r["single_qps"] else "-"
        mem = f"{r['bytes'] / 1e6:,.0f}" if r["bytes"] else "-"
        single = f"{r['single_qps']:,.1f}" if r["single_qps"] else "-"
        rec = f"{r['recall']:.3f}" if r["recall"] is not None else "-"
        items = f"{r['n']:,}" + ("" if r["set"] == "synthetic" else f" {r['set']}")
        out.append(f"| {items} | {r['method']} | {r['build_s']:.2f} | {mem} | {r['batch_qps']:,.1f} | "
                   f"{single} | {rec} | {bx} | {sx} |")
    return "\n".join(out)


def fmt_stats(stats: list[dict]) -> str:
    return "\n".join(
        f"- {s['n']:,} {s['set']} items: mean {s['l0']:.0f} active of {s['d']:,} features per item "
        f"({s['l0_pct']:.2f}%; queries {s['q_l0']:.0f}), most frequent "
        f"feature in {100 * s['max_freq']:.0f}% of items, median feature in {100 * s['median_freq']:.2f}%; "
        f"a query touches {s['touched']:,.0f} postings ({s['touched'] / s['n']:.2f} per item); "
        f"data generated in {s['gen_s']:.0f} s" for s in stats)


def write_doc(path: Path) -> None:
    """Regenerate the markdown file's generated blocks (its ``search-bench JSON`` block reads the JSON just
    written), by the one mechanism every doc block uses."""
    from sparseclip.experiments.doc_blocks import main as doc_blocks

    if "<!-- generated: search-bench " not in path.read_text():
        raise SystemExit(f"{path}: no <!-- generated: search-bench JSON --> block to regenerate")
    doc_blocks([str(path)])


def _datasets(args, sizes: list[int]):
    """``(n, data)`` per table block: synthetic sizes (data None), then the run's real codes and resamples."""
    for n in sizes:
        yield n, None
    if args.run is None:
        return
    from search_real import dense_embeddings, resample, resample_dense, run_codes

    t = time.perf_counter()
    real, queries = run_codes(args.run, args.queries)
    gen_s = time.perf_counter() - t
    dense = dense_embeddings(args.dense_run, args.queries) if args.dense_run else None
    yield real.shape[0], {"set": "real", "codes": real, "queries": queries, "gen_s": gen_s,
                          **({"xb": dense[0], "xq": dense[1]} if dense else {})}
    for n in [int(x) for x in args.run_sizes.split(",") if x]:
        t = time.perf_counter()
        data = {"set": "resampled", "codes": resample(real, n, seed=n), "queries": queries}
        if dense:  # the dense run's own embedding statistics (mean, covariance) and its real query embeddings
            data.update(xb=resample_dense(dense[0], n, seed=n), xq=dense[1], dense_label="dense run, resampled")
        data["gen_s"] = time.perf_counter() - t
        yield n, data  # bench_size pops the codes: no second reference stays here


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="100000,1000000", help="comma-separated item counts")
    p.add_argument("--dim", type=int, default=16384)
    p.add_argument("--density-min", type=float, default=0.005)
    p.add_argument("--density-max", type=float, default=0.02)
    p.add_argument("--alpha", type=float, default=1.0, help="power-law exponent of feature frequency")
    p.add_argument("--offset", type=float, default=100.0, help="power-law rank offset (flattens the head)")
    p.add_argument("--dense-dim", type=int, default=512)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--queries", type=int, default=500, help="batch size for batch QPS")
    p.add_argument("--single", type=int, default=50, help="queries timed one at a time")
    p.add_argument("--dense-batch", type=int, default=500, help="faiss batch size (<= --queries)")
    p.add_argument("--dense-single", type=int, default=20, help="faiss single queries timed")
    p.add_argument("--reps", type=int, default=2)
    p.add_argument("--engine", choices=["numba", "scipy"], help="exact engine (default: numba if installed)")
    p.add_argument("--no-scipy", dest="scipy", action="store_false", help="skip the scipy engine rows")
    p.add_argument("--no-sdt", dest="sdt", action="store_false", help="skip sparse_dot_topn")
    p.add_argument("--no-approx", dest="approx", action="store_false", help="skip Seismic")
    p.add_argument("--approx-max-n", type=int, default=20000,
                   help="run Seismic only at sizes up to this (its build is slow at 16k features)")
    p.add_argument("--seismic-postings", type=int, default=approx.DEFAULT_BUILD["n_postings"])
    p.add_argument("--seismic-centroids", type=float, default=approx.DEFAULT_BUILD["centroid_fraction"])
    p.add_argument("--seismic-query-cut", type=int, default=approx.DEFAULT_QUERY["query_cut"])
    p.add_argument("--seismic-heap-factor", type=float, default=approx.DEFAULT_QUERY["heap_factor"])
    p.add_argument("--hnsw", action="store_true", help="add faiss HNSW (approximate dense) at matched recall")
    p.add_argument("--hnsw-max-n", type=int, default=200_000, help="build HNSW only up to this size")
    p.add_argument("--hnsw-recall", type=float, default=0.95, help="recall@k HNSW must reach (efSearch raised)")
    p.add_argument("--pruned", default="", metavar="KEEP:MIN:CAND,...",
                   help="own approximate engine (static posting pruning + exact re-ranking), one row per point: "
                   "fraction of each posting list kept, at least MIN postings, CAND candidates re-ranked")
    p.add_argument("--milvus", action="store_true", help="add Milvus Lite (needs sparseclip[milvus])")
    p.add_argument("--milvus-max-n", type=int, default=20_000, help="run Milvus only up to this size")
    p.add_argument("--milvus-queries", type=int, default=20,
                   help="Milvus batch size (a fifth of it timed one by one); Milvus Lite's search is pure Python")
    p.add_argument("--run", type=Path, help="also benchmark this run's real codes (needs RUN/features.safetensors)")
    p.add_argument("--dense-run", type=Path, help="with --run: a dense run whose embeddings of the same images "
                   "and captions are the dense side (default: random vectors)")
    p.add_argument("--run-sizes", default="", help="with --run: sizes resampled from the real codes' statistics")
    p.add_argument("--write-doc", type=Path, help="then regenerate this markdown file's generated blocks (its "
                                                   "`search-bench JSON` block reads --json's file)")
    p.add_argument("--json", type=Path, help="write the run's figures (rows, stats, command, load) to this JSON")
    p.add_argument("--render", action="store_true",
                   help="measure nothing: regenerate --write-doc's blocks from the JSON files they name")
    args = p.parse_args()
    if args.write_doc and not (args.json or args.render):
        p.error("--write-doc regenerates the doc from a JSON: give --json too")
    if args.render:
        if not args.write_doc:
            p.error("--render needs --write-doc")
        write_doc(args.write_doc)
        return
    unthrottle()  # the dense baselines run on the kernel OpenBLAS picks, not one an environment variable forces
    sizes = [int(s) for s in args.sizes.split(",") if s]
    load_before = os.getloadavg()
    print(f"load average before: {load_before[0]:.2f} (1 min), {os.cpu_count()} cores", flush=True)
    rows, stats = [], []
    for n, data in _datasets(args, sizes):
        r, s = bench_size(n, args, data)
        rows += r
        stats.append(s)
        gc.collect()  # free this size's structures before the next
        print(fmt_table(r), flush=True)
    load_after = os.getloadavg()
    result = {"command": "python benchmarks/bench_search.py " + " ".join(os.sys.argv[1:]),
              "date": time.strftime("%Y-%m-%d"), "machine": f"{platform.processor() or platform.machine()}, "
              f"{os.cpu_count()} cores", "k": args.k, "queries": args.queries, "reps": args.reps,
              "load_before": round(load_before[0], 2), "load_after": round(load_after[0], 2),
              "rows": rows, "stats": stats, "blas": blas_libraries(), "blas_env_removed": removed()}
    text = render(result)
    print("\n" + text)
    busy = max(load_before[0], load_after[0]) > (os.cpu_count() or 1)
    if (args.write_doc or args.json) and busy:
        raise SystemExit(f"not writing results: the load average ({load_before[0]:.2f} before, "
                         f"{load_after[0]:.2f} after) exceeded the {os.cpu_count()} cores; rerun on a quiet machine")
    generic = generic_kernels(result["blas"])
    if (args.write_doc or args.json) and generic:
        raise SystemExit("not writing results: a baseline ran on a generic BLAS kernel ("
                         + ", ".join(f"{g['library']}: {g['kernel']}" for g in generic) + "); unset what selects it")
    if args.json:
        write_text_atomic(args.json, json.dumps(result, indent=1, default=float))
        print(f"wrote {args.json}")
    if args.write_doc:
        write_doc(args.write_doc)


def render(result: dict) -> str:
    """The doc block of one benchmark run, from its JSON alone (``--json``; ``--render`` rewrites a doc from it)."""
    return (f"Command: `{result['command']}` ({result['date']}, {result['machine']}, k={result['k']}, "
            f"batch of {result['queries']} queries, best of {result['reps']} interleaved runs; load average "
            f"{result['load_before']:.2f} before, {result['load_after']:.2f} after). Ratios are against the tuned "
            f"faiss row." + (f" {describe(result['blas'], result.get('blas_env_removed', {}))}." if "blas" in result
                             else " (BLAS kernel not recorded.)")
            + f"\n\n{fmt_table(result['rows'])}\n\n{fmt_stats(result['stats'])}")

if __name__ == "__main__":
    main()
