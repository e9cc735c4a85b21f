"""``sparseclip index build|search|info``: embed images to sparse codes, store them, search them with reasons."""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from pathlib import Path

from . import UserError

BUILD_HELP = """Embed images with a Sparse CLIP model and store their codes as a sparse inverted index:
INDEX_DIR/codes.npz (scipy.sparse CSC, items x features) and INDEX_DIR/index.json (ids or paths, captions,
model checkpoint and config, feature names). Images come from the procedural world (--dataset world --n N)
or from a folder (--images-dir DIR, searched recursively). --append adds them to an existing index."""

SEARCH_HELP = """Search an index with a text or an image, embedded by the model the index was built with.
--explain lists, for each hit, the shared features that made its score (query value x item value), with
names when the index has them. Filters take phrases ("red but not circle": --text red --exclude circle):
a phrase stands for the top --concept-k features the text tower activates for it."""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("index", help="sparse search: build an inverted index of codes, search it with reasons",
                       description="Sparse search over Sparse CLIP codes (see docs/search.md).")
    isub = p.add_subparsers(dest="index_command", metavar="ACTION", required=True)

    b = isub.add_parser("build", help="embed images to codes and store them as an index", description=BUILD_HELP)
    b.add_argument("checkpoint", metavar="RUN_OR_CKPT", help="run dir or checkpoint dir of a Sparse CLIP model")
    b.add_argument("--out", required=True, metavar="INDEX_DIR", help="index directory to write")
    src = b.add_mutually_exclusive_group()
    src.add_argument("--dataset", choices=["world"], default="world", help="built-in dataset (default world)")
    src.add_argument("--images-dir", metavar="DIR", help="index every image under DIR instead")
    src.add_argument("--data", metavar="CSV", help="index the images of a CSV of image-caption pairs (each image "
                     "once, with its first caption kept for display)")
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
    s.add_argument("index", metavar="INDEX_DIR")
    q = s.add_mutually_exclusive_group(required=True)
    q.add_argument("--text", help="text query")
    q.add_argument("--image", metavar="PATH", help="image query")
    s.add_argument("-k", type=int, default=10, help="number of hits (default 10)")
    s.add_argument("--explain", type=int, nargs="?", const=5, default=0, metavar="N",
                   help="show the N features that contributed most to each hit (default N=5)")
    s.add_argument("--json", action="store_true", help="print the hits as JSON")
    s.add_argument("--require", action="append", default=[], metavar="PHRASE",
                   help="keep items with at least one of PHRASE's features (repeatable: all phrases)")
    s.add_argument("--exclude", action="append", default=[], metavar="PHRASE",
                   help="drop items with any of PHRASE's features (repeatable)")
    s.add_argument("--require-feature", action="append", type=int, default=[], metavar="ID")
    s.add_argument("--exclude-feature", action="append", type=int, default=[], metavar="ID")
    s.add_argument("--boost", action="append", default=[], metavar="FEATURE=WEIGHT",
                   help="add WEIGHT to the query's FEATURE (negative to penalise; repeatable)")
    s.add_argument("--concept-k", type=int, default=3, help="features per filter phrase (default 3)")
    s.add_argument("--baseline", metavar="PHRASE", help="subtract this phrase's code when finding phrase features")
    s.add_argument("--min-activation", type=float, default=0.0, help="a feature counts as active above this")
    s.add_argument("--model", metavar="RUN_OR_CKPT", help="embed queries with this model instead of the index's")
    s.add_argument("--approximate", action="store_true", help="approximate search (needs pyseismic-lsr)")
    s.set_defaults(func=run_search)

    i = isub.add_parser("info", help="describe an index")
    i.add_argument("index", metavar="INDEX_DIR")
    i.set_defaults(func=run_info)


# -- build -------------------------------------------------------------------------------------------
def _feature_names(path: Path | None) -> dict[int, str]:
    """Names from ``{"id": "name"}`` or from an analysis ``features.json`` (``{"features": [{id, name}]}``)."""
    if path is None:
        return {}
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise UserError(f"--feature-names {path}: cannot read JSON ({e})") from None
    if isinstance(data, dict) and isinstance(data.get("features"), list):
        return {int(f["id"]): str(f["name"]) for f in data["features"] if f.get("name")}
    if isinstance(data, dict):
        try:
            return {int(k): str(v) for k, v in data.items()}
        except ValueError:
            pass
    raise UserError(f"--feature-names {path}: expected {{\"id\": \"name\"}} or an analysis features.json")


def _world_items(cfg, n: int, seed: int, start: int):
    from ..data.world import World

    world = World(seed=seed, image_size=cfg.data.image_size, max_objects=cfg.data.max_objects)
    for i in range(start, start + n):
        scene = world.scene(i)
        yield f"world:{seed}:{i}", scene.caption, world.render(scene, i)


def _folder_items(root: Path, skipped: Counter):
    from ..data.folder import IMAGE_SUFFIXES
    from ..data.sources import SkipSample, open_rgb

    if not root.is_dir():
        raise UserError(f"--images-dir {root}: not a directory")
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise UserError(f"--images-dir {root}: no images ({', '.join(IMAGE_SUFFIXES)})")
    for path in files:
        try:
            img = open_rgb(path)
        except SkipSample as e:  # unreadable: skipped and counted
            skipped[e.reason] += 1
            continue
        yield str(path), None, img


def _csv_codes(path: Path, model, cfg, batch_size: int, skipped: Counter):
    """(codes CSR, ids, first caption of each) of a CSV's images, encoded in chunks as they are read."""
    from ..embed import encode_images
    from ..eval.dataset import load_csv_pairs
    from ..index.codes import as_csr

    pairs = load_csv_pairs(path, cfg.data.csv_img_key, cfg.data.csv_caption_key, cfg.data.csv_separator,
                           encode=lambda ims: as_csr(encode_images(model, ims, cfg.data.image_size, batch_size)),
                           chunk=batch_size)
    skipped.update(pairs.skipped)
    first: dict[int, str] = {}
    for cap, i in zip(pairs.captions, pairs.caption_image, strict=True):
        first.setdefault(i, cap)
    return pairs.codes, list(pairs.ids), [first.get(i, "") for i in range(len(pairs.ids))]


def run_build(args: argparse.Namespace) -> int:
    """Build or append under an exclusive lock: a second writer of the same index is refused."""
    from ..runlock import FolderLock

    with FolderLock(args.out, "index build", beside=True):
        return _build(args)


def _build(args: argparse.Namespace) -> int:
    from ..checkpoint import load_model, resolve_checkpoint
    from ..index import SparseIndex
    from ..index.embedding import encode_items

    if args.n < 1 or args.batch_size < 1:
        raise UserError("--n and --batch-size must be >= 1")
    t0 = time.time()
    ckpt = resolve_checkpoint(args.checkpoint)
    model, cfg = load_model(ckpt)
    if not model.image_head.nonnegative:
        raise UserError(f"{args.checkpoint}: head kind {cfg.model.head.kind!r} is not non-negative; "
                        "sparse search needs a relu or topk head")
    out = Path(args.out)
    index = SparseIndex.load(out) if args.append else None
    if index is None and (out / "index.json").exists():
        raise UserError(f"{out} already holds an index: pass --append to add to it, or choose another --out")
    if index is not None and index.n_features != model.code_dim:
        raise UserError(f"{out}: index has {index.n_features} features, the model's code has {model.code_dim}")
    skipped: Counter = Counter()
    if args.images_dir:
        items = _folder_items(Path(args.images_dir), skipped)
    elif args.data:
        items = None
    else:
        seed = cfg.data.val_seed if args.seed is None else args.seed
        start = args.start if args.start is not None else (len(index) if index is not None else 0)
        items = _world_items(cfg, args.n, seed, start)
    if items is None:
        codes, ids, captions = _csv_codes(Path(args.data), model, cfg, args.batch_size, skipped)
    else:
        codes, ids, captions = encode_items(model, items, cfg.data.image_size, args.batch_size)
    if not ids:
        raise UserError("no image could be read; nothing indexed")
    captions = captions if any(c for c in captions) else None
    if index is None:
        run_dir = ckpt.parent.parent if ckpt.parent.name == "checkpoints" else ckpt.parent
        names_path = Path(args.feature_names) if args.feature_names else None
        for found in ("feature_names.json", "features.json"):  # every named feature, else the detailed few
            if names_path is None and (run_dir / "analysis" / found).is_file():
                names_path = run_dir / "analysis" / found
        index = SparseIndex.build(codes, ids, normalize=not args.no_normalize, captions=captions,
                                  feature_names=_feature_names(names_path),
                                  model={"checkpoint": str(ckpt.resolve()), "config": cfg.to_dict()})
    else:
        index.append(codes, ids, captions)
        if args.feature_names:
            index.feature_names.update(_feature_names(Path(args.feature_names)))
    index.save(out)
    l0 = codes.nnz / max(codes.shape[0], 1)
    extra = f"; skipped {dict(skipped)}" if skipped else ""
    print(f"indexed {len(ids)} images (mean {l0:.1f} active of {codes.shape[1]} features) -> {out} "
          f"[{len(index)} items, {index.nbytes / 1e6:.1f} MB] in {time.time() - t0:.1f} s{extra}")
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


def _query_model(index, override: str | None):
    from ..checkpoint import load_model

    path = override or (index.model or {}).get("checkpoint")
    if not path:
        raise UserError("this index records no model to embed queries with; pass --model RUN_OR_CKPT")
    if not Path(path).exists():
        raise UserError(f"the index's model {path} is not there any more; pass --model RUN_OR_CKPT")
    model, cfg = load_model(path)
    if model.code_dim != index.n_features:
        raise UserError(f"model {path} makes {model.code_dim}-feature codes, the index has {index.n_features}")
    return model, cfg


def run_search(args: argparse.Namespace) -> int:
    import numpy as np

    from ..concepts import concept_features
    from ..embed import encode_images, encode_texts
    from ..index import SparseIndex
    from ..model import get_tokenizer

    if args.k < 1 or args.concept_k < 1:
        raise UserError("-k and --concept-k must be >= 1")
    index = SparseIndex.load(args.index)
    model, cfg = _query_model(index, args.model)
    tok = get_tokenizer(cfg.model)
    if args.text is not None:
        if not args.text.strip():
            raise UserError("--text is empty")
        query = encode_texts(model, tok, [args.text])
    else:
        from ..data.sources import SkipSample, open_rgb

        try:
            img = open_rgb(args.image)
        except SkipSample as e:
            raise UserError(f"--image {args.image}: cannot read it ({e})") from None
        query = encode_images(model, [img], cfg.data.image_size)
    allowed = None
    filters: dict[str, list[int]] = {}
    for phrase in args.require:
        feats = concept_features(model, tok, phrase, args.concept_k, baseline=args.baseline)
        filters[f"require {phrase!r}"] = feats
        mask = index.allowed_mask(require_any=feats, min_activation=args.min_activation)
        if mask is not None:
            allowed = mask if allowed is None else allowed & mask
    exclude = list(args.exclude_feature)
    for phrase in args.exclude:
        feats = concept_features(model, tok, phrase, args.concept_k, baseline=args.baseline)
        filters[f"exclude {phrase!r}"] = feats
        exclude += feats
    hits = index.search(query, k=args.k, require=args.require_feature or None, exclude=exclude or None,
                        boost=_parse_boost(args.boost) or None, min_activation=args.min_activation,
                        explain=args.explain, approximate=args.approximate, allowed=allowed)
    if args.json:
        print(json.dumps({"query": {"text": args.text, "image": args.image}, "filters": filters,
                          "hits": [h.to_dict() for h in hits]}, indent=2))
        return 0
    for what, feats in filters.items():
        names = [f"{f}" + (f" ({index.feature_name(f)})" if index.feature_name(f) else "") for f in feats]
        print(f"[{what}: features {', '.join(names) or 'none active'}]")
    if not hits:
        print("no hits: no indexed item shares an active feature with the query (after filters)")
    for h in hits:
        caption = f"  {' '.join(h.caption.split())}" if h.caption else ""  # one line per hit
        print(f"{h.rank:3d}  {h.score:.4f}  {h.id}{caption}")
        for c in h.contributions:
            name = f" {c.name}" if c.name else ""
            print(f"       f{c.feature}{name}: {c.contribution:+.4f}  (query {c.query_value:.3f} x item "
                  f"{c.item_value:.3f})")
        if h.contributions and not np.isclose(h.rest, 0.0):
            print(f"       other shared features: {h.rest:+.4f}")
    return 0


def run_info(args: argparse.Namespace) -> int:
    from ..index import SparseIndex

    index = SparseIndex.load(args.index)
    ckpt = (index.model or {}).get("checkpoint", "none recorded")
    print(f"{args.index}: {len(index)} items x {index.n_features} features, {index.nnz} non-zeros "
          f"(mean {index.nnz / max(len(index), 1):.1f} per item), {index.nbytes / 1e6:.1f} MB in memory, "
          f"{'cosine' if index.normalize else 'dot-product'} scores, {len(index.feature_names)} feature names, "
          f"model {ckpt}")
    return 0
