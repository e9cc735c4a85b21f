"""``sparseclip import-emoji``: build the offline emoji image-caption set as CSV or webdataset shards."""

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


def run(args: argparse.Namespace) -> int:
    from ..data.emoji import import_emoji

    summary = import_emoji(args.out, fmt=args.format, size=args.size, views=args.views, limit=args.limit,
                           font_path=args.font, shard_size=args.shard_size)
    print(json.dumps(summary, indent=2))
    return 0
