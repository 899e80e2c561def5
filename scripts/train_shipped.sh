#!/usr/bin/env bash
# How the shipped weights were trained: one run per model and scale, each resumable with --resume.
# Usage: scripts/train_shipped.sh [NAME...]   (e.g. srcnn-955-x3 compact-x2; default: all)
# Needs ../shared/datasets (T91, BSD200 for training, Set5 for validation). Runs land in runs/NAME,
# then their model.safetensors is copied into src/superres/models/weights/NAME.safetensors.
set -euo pipefail
cd "$(dirname "$0")/.."
data=../shared/datasets
superres=.venv/bin/superres

declare -A recipe=(
  # name            "model scale patch steps loss"
  [srcnn-955-x2]="srcnn-955 2 48 20000 mse"
  [srcnn-955-x3]="srcnn-955 3 48 30000 mse"
  [srcnn-955-x4]="srcnn-955 4 64 20000 mse"
  [compact-x2]="compact 2 64 30000 l1"
  [compact-x3]="compact 3 96 30000 l1"
  [compact-x4]="compact 4 128 30000 l1"
  [fsrcnn-x3]="fsrcnn 3 96 20000 l1"
  [espcn-x3]="espcn 3 96 20000 l1"
  [fsrcnn-x2]="fsrcnn 2 64 20000 l1"
  [fsrcnn-x4]="fsrcnn 4 128 20000 l1"
  [espcn-x2]="espcn 2 64 20000 l1"
  [espcn-x4]="espcn 4 128 20000 l1"
)
names=("$@")
[ ${#names[@]} -gt 0 ] || names=(srcnn-955-x3 srcnn-955-x2 srcnn-955-x4 compact-x3 compact-x2 compact-x4 fsrcnn-x3 espcn-x3
         fsrcnn-x2 fsrcnn-x4 espcn-x2 espcn-x4)
for name in "${names[@]}"; do
  read -r model scale patch steps loss <<<"${recipe[$name]}"
  run=runs/$name
  resume=()
  [ -f "$run/checkpoint.pt" ] && resume=(--resume)
  "$superres" train --model "$model" --scale "$scale" --train "$data/T91" --train "$data/BSD200" \
    --val "$data/Set5" -o "$run" --steps "$steps" --epoch-steps 2000 --patch-size "$patch" \
    --batch-size 16 --lr 1e-3 --loss "$loss" --precision bf16 --seed 0 "${resume[@]}"
  cp "$run/model.safetensors" "src/superres/models/weights/$name.safetensors"
  mkdir -p docs/results/training-logs && cp "$run/log.csv" "docs/results/training-logs/$name.csv"
done
