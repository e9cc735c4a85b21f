"""``sparseclip index build|search|info``: embed images to sparse codes, store them, search them with reasons."""

from __future__ import annotations

import argparse
import json

from . import UserError
from ._model import SHIPPED_HELP, add_model_arguments, model_target

BUILD_HELP = """Embed images with a Sparse CLIP model and store their codes as a sparse inverted index:
INDEX_DIR/codes.npz (scipy.sparse CSC, items x features) and INDEX_DIR/index.json (ids or paths, captions,
model checkpoint and config, feature names). Images come from the procedural world (--dataset world --n N)
or from a folder (--images-dir DIR, searched recursively). --append adds them to an existing index (built
with the same model).
--backend chooses who ranks the searches of the index (explanations always come from the stored codes):"""

SEARCH_HELP = """Search an index with a text or an image, embedded by the model the index was built with.
--explain lists, for each hit, the shared features that made its score (query value x item value), with
names when the index has them. Filters take phrases ("red but not circle": --text red --exclude circle):
a phrase stands for the top --concept-k features the text tower activates for it."""


def _backend_flag(backend: str, option: str) -> str:
    return f"--{backend}-{option.replace('_', '-')}"


def _backend_dest(backend: str, option: str) -> str:
    return f"backend_option:{backend}:{option}"


def _add_backend_arguments(b: argparse.ArgumentParser) -> None:
    """``index build``'s part that asks the search backend registry (importing the backends, numpy and scipy): the
    backends' summaries, ``--backend``'s registered choices and each backend's ``--<backend>-<option>`` flags. Run
    only when ``index build`` is parsed or its help shown (:class:`~sparseclip.cli.LazyParser`)."""
    from ..index.backends import BACKENDS, DEFAULT_BACKEND

    backends = "\n".join(f"  {name}: {cls.summary}" for name, cls in BACKENDS.items())
    b.description = f"{BUILD_HELP}\n{backends}"
    b.add_argument("--backend", choices=BACKENDS.names(),
                   help=f"the search backend that ranks (default: {DEFAULT_BACKEND}, or the index's own with --append)")
    for name, cls in BACKENDS.items():  # each backend's build parameters: --<backend>-<option>
        for opt in cls.options:
            b.add_argument(_backend_flag(name, opt.name), dest=_backend_dest(name, opt.name), type=opt.type,
                           metavar=opt.metavar or opt.name.upper(), help=f"--backend {name}: {opt.help}")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("index", help="sparse search: build an inverted index of codes, search it with reasons",
                       description="Sparse search over Sparse CLIP codes (see docs/search.md).")
    isub = p.add_subparsers(dest="index_command", metavar="ACTION", required=True)

    b = isub.add_parser("build", help="embed images to codes and store them as an index", description=BUILD_HELP,
                        formatter_class=argparse.RawDescriptionHelpFormatter, complete=_add_backend_arguments)
    add_model_arguments(b, "checkpoint", "RUN_OR_CKPT", "run dir or checkpoint dir of a Sparse CLIP model")
    b.add_argument("--out", required=True, metavar="INDEX_DIR", help="index directory to write")
    src = b.add_mutually_exclusive_group()
    src.add_argument("--dataset", choices=["world"], default="world", help="built-in dataset (default world)")
    src.add_argument("--images-dir", metavar="DIR", help="index every image under DIR instead")
    src.add_argument("--data", metavar="CSV", help="index the images of a CSV of image-caption pairs (each image "
                     "once, with its first caption kept for display)")
    b.add_argument("--csv-img-key", help="--data: CSV image column (default: the run's data.csv_img_key)")
    b.add_argument("--csv-caption-key", help="--data: CSV caption column (default: the run's data.csv_caption_key)")
    b.add_argument("--n", type=int, default=1000, help="world: number of images (default 1000)")
    b.add_argument("--seed", type=int, help="world: seed (default: the model config's data.val_seed)")
    b.add_argument("--start", type=int, help="world: first scene index (default 0, or the index size with --append)")
    b.add_argument("--append", action="store_true", help="add to the existing index at --out")
    b.add_argument("--feature-names", metavar="JSON", help='feature names: {"id": "name"} or an analysis '
                   "features.json (default: RUN/analysis/features.json when present)")
    b.add_argument("--no-normalize", action="store_true", help="score raw dot products instead of cosine")
    b.add_argument("--batch-size", type=int, default=256)
    b.set_defaults(func=run_build)

    s = isub.add_parser("search", help="search an index with a text or image query", description=SEARCH_HELP)
    s.add_argument("index", metavar="INDEX_DIR", help="an index folder written by `sparseclip index build`")
    q = s.add_mutually_exclusive_group(required=True)
    q.add_argument("--text", help="text query")
    q.add_argument("--image", metavar="PATH", help="image query")
    s.add_argument("-k", type=int, default=10, help="number of hits (default 10)")
    s.add_argument("--explain", type=int, nargs="?", const=5, default=0, metavar="N",
                   help="show the N features that contributed most to each hit (default N=5)")
    s.add_argument("--json", action="store_true", help="print the hits as JSON")
    s.add_argument("--html", metavar="PATH", help="also write the results as one HTML page with thumbnails")
    s.add_argument("--open", action="store_true", help="open the --html page (or a temporary one) in a browser")
    s.add_argument("--require", action="append", default=[], metavar="PHRASE",
                   help="keep items with at least one of PHRASE's features (repeatable: all phrases)")
    s.add_argument("--exclude", action="append", default=[], metavar="PHRASE",
                   help="drop items with any of PHRASE's features (repeatable)")
    s.add_argument("--require-feature", action="append", type=int, default=[], metavar="ID",
                   help="keep only items on which feature ID is active (repeatable: all of them)")
    s.add_argument("--exclude-feature", action="append", type=int, default=[], metavar="ID",
                   help="drop items on which feature ID is active (repeatable)")
    s.add_argument("--boost", action="append", default=[], metavar="FEATURE=WEIGHT",
                   help="add WEIGHT to the query's FEATURE (negative to penalise; repeatable)")
    s.add_argument("--concept-k", type=int, default=3, help="features per filter phrase (default 3)")
    s.add_argument("--baseline", metavar="PHRASE", help="subtract this phrase's code when finding phrase features")
    s.add_argument("--min-activation", type=float, default=0.0, help="a feature counts as active above this")
    s.add_argument("--model", metavar="RUN_OR_CKPT",
                   help=f"embed queries with this model instead of the index's (a run or checkpoint dir, or "
                        f"{SHIPPED_HELP})")
    s.add_argument("--approximate", action="store_true",
                   help="approximate search (the index's backend when it is approximate, else the own pruned engine: "
                        "scores exact, a few hits may be missed; pays off on large indexes, see docs/search.md)")
    s.set_defaults(func=run_search)

    i = isub.add_parser("info", help="describe an index")
    i.add_argument("index", metavar="INDEX_DIR", help="an index folder written by `sparseclip index build`")
    i.set_defaults(func=run_info)


# -- build -------------------------------------------------------------------------------------------
def _backend_options(args: argparse.Namespace) -> dict:
    """The given ``--<backend>-<option>`` values of the chosen backend; one given for another backend is an error."""
    given = {}
    for dest, value in vars(args).items():
        if dest.startswith("backend_option:") and value is not None:
            _, backend, option = dest.split(":")
            if backend != args.backend:
                raise UserError(f"{_backend_flag(backend, option)} needs --backend {backend}")
            given[option] = value
    return given


def run_build(args: argparse.Namespace) -> int:
    from ..index.build import BuildOptions, build_index_from_run
    from ._paths import check_out_dir

    check_out_dir(args.out)
    options = BuildOptions(images_dir=args.images_dir, data=args.data, img_key=args.csv_img_key,
                           caption_key=args.csv_caption_key, n=args.n, seed=args.seed, start=args.start,
                           append=args.append, feature_names=args.feature_names, normalize=not args.no_normalize,
                           batch_size=args.batch_size, backend=args.backend, backend_options=_backend_options(args))
    print(build_index_from_run(model_target(args, "checkpoint", "RUN_OR_CKPT"), args.out, options).summary())
    return 0


# -- search ------------------------------------------------------------------------------------------
def _parse_boost(items: list[str]) -> dict[int, float]:
    out: dict[int, float] = {}
    for item in items:
        feat, sep, weight = item.partition("=")
        try:
            out[int(feat)] = out.get(int(feat), 0.0) + float(weight)
        except ValueError:
            raise UserError(f"--boost {item!r}: expected FEATURE=WEIGHT, e.g. 12=0.5") from None
        if not sep:
            raise UserError(f"--boost {item!r}: expected FEATURE=WEIGHT, e.g. 12=0.5")
    return out


def run_search(args: argparse.Namespace) -> int:
    from ..index.query import format_result, search_index

    if args.text is not None and not args.text.strip():
        raise UserError("--text is empty")
    r = search_index(args.index, text=args.text, image=args.image, k=args.k, explain=args.explain,
                     require_phrases=args.require, exclude_phrases=args.exclude,
                     require_features=args.require_feature, exclude_features=args.exclude_feature,
                     boost=_parse_boost(args.boost), concept_k=args.concept_k, baseline=args.baseline,
                     min_activation=args.min_activation, model=args.model, approximate=args.approximate)
    if args.json:
        print(json.dumps({"query": {"text": args.text, "image": args.image}, **r.to_dict()}, indent=2))
    else:
        for line in format_result(r):
            print(line)
    if args.html or args.open:
        _write_page(r, args.html, args.open, quiet=args.json)
    return 0


def _write_page(result, path: str | None, show: bool, quiet: bool) -> None:
    """Write the results page (to ``path``, or a temporary file when only ``--open`` is given) and open it."""
    import tempfile

    from ..report.search_page import write_search_page

    if path is None:
        path = tempfile.mkstemp(prefix="sparseclip-search-", suffix=".html")[1]
    page = write_search_page(result, path)
    if not quiet:
        print(f"results page: {page}")
    if show:
        import webbrowser

        if not webbrowser.open(page.resolve().as_uri()):
            print(f"no browser could be started; open {page} yourself")


def run_info(args: argparse.Namespace) -> int:
    from ..index import SparseIndex

    index = SparseIndex.load(args.index)
    ckpt = (index.model or {}).get("checkpoint", "none recorded")
    via = f", {index.ranked_by()}" if index.ranked_by() else ""
    print(f"{args.index}: {len(index)} items x {index.n_features} features, {index.nnz} non-zeros "
          f"(mean {index.nnz / max(len(index), 1):.1f} per item), {index.nbytes / 1e6:.1f} MB in memory, "
          f"{'cosine' if index.normalize else 'dot-product'} scores, {len(index.feature_names)} feature names, "
          f"model {ckpt}{via}")
    return 0
