#!/usr/bin/env bash
# Sparsify pretrained towers on the Noto colour emoji, with the CLI only: dense vs ReLU heads on frozen
# EfficientNet-Lite0 + all-MiniLM-L6-v2, evaluated on the held-out test emoji (retrieval, and zero-shot over
# the emoji groups with this folder's templates), then one table.
#
#   bash examples/pretrained_emoji/run.sh [OUT] [KEY=VALUE ...]      # OUT defaults to runs/emoji
#
# Needs the Debian package fonts-noto-color-emoji and `pip install -e '.[pretrained]'`. Environment:
# SIZE (image side, 128), VIEWS (renderings per training emoji, 2), LIMIT (about this many emoji, 0 = all),
# SPARSECLIP (the command, default `sparseclip`). KEY=VALUE overrides go to both trainings.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-runs/emoji}
shift || true
sc=${SPARSECLIP:-sparseclip}
size=${SIZE:-128}

if [ ! -f "$out/data/train.csv" ]; then
  $sc import-emoji "$out/data" --format csv --size "$size" --views "${VIEWS:-2}" --limit "${LIMIT:-0}"
fi
for head in dense relu; do
  config="$here/emoji.yaml"
  [ "$head" = dense ] && config="$here/emoji_dense.yaml"
  $sc train "$config" "data.train_data=$out/data/train.csv" "model.vision_cfg.image_size=$size" \
    "data.image_size=$size" train.progress=false "$@" --out "$out/$head" --overwrite
  $sc eval "$out/$head" --data "$out/data/test.csv" --label-key group --templates "$here/templates.txt" \
    --out "$out/$head/eval_test.json"
done
$sc compare "$out/dense/eval_test.json" "$out/relu/eval_test.json" --out "$out/results.md"
