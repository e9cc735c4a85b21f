"""``sparseclip import-emoji`` / ``import-world`` / ``import-digits``: write image-caption data sets (CSV or shards)
to try the ``--data`` commands on files: the Noto colour emoji, the procedural world with label columns, or
scikit-learn's handwritten digits with label columns."""

from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "import-emoji",
        help="render the Noto colour emoji with their Unicode names as an image-caption set (CSV or shards)",
        description="Render every named single-code-point emoji of Noto Color Emoji (Debian package "
                    "fonts-noto-color-emoji) and write image-caption pairs, split into train and test: "
                    "OUT/train.csv + OUT/test.csv + OUT/images/ (--format csv) or OUT/shards/{train,test}/ "
                    "(--format wds). Prints the data.train_data value to train on.",
    )
    p.add_argument("out", help="output folder")
    p.add_argument("--format", choices=("csv", "wds"), default="csv")
    p.add_argument("--size", type=int, default=128, help="image side in pixels (default 128)")
    p.add_argument("--views", type=int, default=1,
                   help="renderings per training emoji (1 plain + shifted/scaled/tinted copies; default 1)")
    p.add_argument("--limit", type=int, default=0, help="keep about this many emoji (0: all)")
    p.add_argument("--font", default=None, help="path of NotoColorEmoji.ttf (default: the Debian location)")
    p.add_argument("--shard-size", type=int, default=1000, help="samples per shard (--format wds)")
    p.set_defaults(func=run)

    w = sub.add_parser(
        "import-world", help="write the procedural world as a labelled CSV data set (PNG files + train/test CSVs)",
        description="Write one-shape scenes of the procedural world as files, in the training CSV format: "
                    "OUT/train.csv, OUT/test.csv (columns filepath, title, shape, color, size, position, "
                    "background; --captions rows per image) and OUT/images/. A labelled set to try "
                    "`train data.kind=csv`, `eval --data`, `analyze --data` and `index build --data` on.")
    w.add_argument("out", help="output folder")
    w.add_argument("--n-train", type=int, default=2000, help="training images (default 2000)")
    w.add_argument("--n-test", type=int, default=300, help="test images (default 300)")
    w.add_argument("--size", type=int, default=32, help="image side in pixels (default 32)")
    w.add_argument("--captions", type=int, default=2, help="captions (rows) per image (default 2)")
    w.set_defaults(func=run_world)

    d = sub.add_parser(
        "import-digits", help="write scikit-learn's handwritten digits as a labelled image-caption CSV set",
        description="Write the 1,797 handwritten digit scans that ship with scikit-learn (8x8, ten classes) as "
                    "files in the training CSV format: OUT/train.csv, OUT/test.csv (columns filepath, title, "
                    "digit, parity; every 5th scan is a test image) and OUT/images/ (dark ink on white, upsampled "
                    "to --size). A real labelled set to try the --data commands on.")
    d.add_argument("out", help="output folder")
    d.add_argument("--size", type=int, default=64, help="image side in pixels (default 64)")
    d.add_argument("--captions", type=int, default=2, help="captions (rows) per image, 1-4 (default 2)")
    d.set_defaults(func=run_digits)


def _written(summary: dict) -> int:
    print(f"wrote {summary['train_images']} training and {summary['test_images']} test images: "
          f"{summary['train_data']}, {summary['test_data']}")
    return 0


def run_world(args: argparse.Namespace) -> int:
    from ..data.export import import_world
    from ._paths import check_out_dir

    check_out_dir(args.out, "OUT")
    return _written(import_world(args.out, args.n_train, args.n_test, args.size, args.captions))


def run_digits(args: argparse.Namespace) -> int:
    from ..data.export import import_digits
    from ._paths import check_out_dir

    check_out_dir(args.out, "OUT")
    return _written(import_digits(args.out, args.size, args.captions))


def run(args: argparse.Namespace) -> int:
    from ..data.emoji import import_emoji

    summary = import_emoji(args.out, fmt=args.format, size=args.size, views=args.views, limit=args.limit,
                           font_path=args.font, shard_size=args.shard_size)
    print(json.dumps(summary, indent=2))
    return 0
