"""How much of a search hit's score its explanation shows: the top-3 concept groups vs the top-3 single features.

An index of world scenes the concept assignment never saw (``--seed``, default 7; ``analyze`` assigns each feature
its concept by evidence on the validation scenes of seed 1, ``analysis/feature_concepts.json``); each scene's own
caption is a text query; for each query's top hit, the share of its score carried by its top-3 concept groups
(``sparseclip.index.explain``) and by its top-3 single features (the explanation before issue 23). Writes
``OUT`` (JSON) and prints one line per model::

    python examples/search_explanations/run.py runs/interp/lite_sparse \
        --concepts docs/interpret/lite/feature_concepts.json --out docs/search/explanations.json
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path


def measure(run: Path, concepts: Path, n: int, seed: int, top: int) -> dict:
    from sparseclip.index import SparseIndex
    from sparseclip.index.build import BuildOptions, build_index_from_run, load_feature_names
    from sparseclip.index.explain import explanation_coverage
    from sparseclip.model import get_tokenizer
    from sparseclip.model.checkpoint import load_model
    from sparseclip.model.embed import encode_texts

    model, cfg = load_model(run)
    with tempfile.TemporaryDirectory() as tmp:
        built = build_index_from_run(run, Path(tmp) / "ix", BuildOptions(n=n, seed=seed), model=(model, cfg))
        index = SparseIndex.load(built.out)
    index.feature_concepts = load_feature_names(concepts)
    queries = encode_texts(model, get_tokenizer(cfg.model), [c or "" for c in index.captions]).numpy()
    cov = explanation_coverage(index, queries, n=top, hits=1)
    return {"run": str(run), "concepts": str(concepts), "items": len(index), "seed": seed, "top": top,
            "mean_active": index.nnz / len(index), "assigned_features": cov["assigned_features"],
            "top_groups_share": cov["top_groups_share"], "top_features_share": cov["top_features_share"],
            "hits": cov["hits"],
            "group_share_quartiles": _quartiles(cov["group_shares"]),
            "feature_share_quartiles": _quartiles(cov["feature_shares"])}


def _quartiles(x: list[float]) -> list[float]:
    import numpy as np

    return [float(v) for v in np.percentile(x, [25, 50, 75])] if x else []


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="*", type=Path, help="runs to measure (each with --concepts, in order)")
    p.add_argument("--concepts", type=Path, action="append", default=[], help="feature_concepts.json per run")
    p.add_argument("--n", type=int, default=1000, help="world scenes indexed (each caption is a query)")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--top", type=int, default=3)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--render-only", action="store_true", help="print the table of OUT, measuring nothing")
    a = p.parse_args(argv)
    if not a.render_only:
        if len(a.concepts) != len(a.runs) or not a.runs:
            p.error("give one --concepts per run")
        from sparseclip.files.atomic import write_json_atomic

        rows = [measure(r, c, a.n, a.seed, a.top) for r, c in zip(a.runs, a.concepts, strict=True)]
        write_json_atomic(a.out, {"command": "python examples/search_explanations/run.py " + " ".join(sys.argv[1:]),
                                  "rows": rows})
    from sparseclip.experiments.doc_blocks import search_explanations  # the docs' generated block

    print(search_explanations(Path.cwd(), [str(a.out.resolve())]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
