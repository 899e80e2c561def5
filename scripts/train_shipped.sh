#!/usr/bin/env bash
# How the shipped weights were trained: one run per model and scale, each resumable with --resume.
# Usage: scripts/train_shipped.sh [NAME...]   (e.g. srcnn-955-x3 compact-x2; default: all)
# Needs ../shared/datasets (T91, BSD200 for training, Set5 for validation). Runs land in runs/NAME,
# then their model.safetensors is copied into src/superres/models/weights/MODEL-xSCALE.safetensors.
# A recipe naming a start run fine-tunes that run's weights (NAME-mse: a short MSE stage after
# the L1 one, which is what PSNR measures) and replaces the shipped file with the result.
# (The same stage for compact-x2 gained 0.006 dB, so it is not part of the recipe.)
# OMP_NUM_THREADS=1 runs two of these side by side on two cores without them fighting.
set -euo pipefail
cd "$(dirname "$0")/.."
data=../shared/datasets
superres=.venv/bin/superres

declare -A recipe=(
  # name            "model scale patch steps loss lr batch [start-run]"
  [srcnn-955-x2]="srcnn-955 2 48 20000 mse 1e-3 16"
  [srcnn-955-x3]="srcnn-955 3 48 30000 mse 1e-3 16"
  [srcnn-955-x4]="srcnn-955 4 64 20000 mse 1e-3 16"
  [compact-x2]="compact 2 64 30000 l1 1e-3 16"
  [compact-x3]="compact 3 96 30000 l1 1e-3 16"
  [compact-x4]="compact 4 128 30000 l1 1e-3 16"
  [fsrcnn-x2]="fsrcnn 2 64 30000 l1 1e-3 16"
  [fsrcnn-x3]="fsrcnn 3 96 40000 l1 1e-3 16"
  [fsrcnn-x3-mse]="fsrcnn 3 96 15000 mse 2e-4 16 fsrcnn-x3"
  [fsrcnn-x4]="fsrcnn 4 128 20000 l1 1e-3 16"
  [espcn-x2]="espcn 2 64 20000 l1 1e-3 16"
  [espcn-x3]="espcn 3 96 20000 l1 1e-3 16"
  [espcn-x4]="espcn 4 128 20000 l1 1e-3 16"
  [autoencoder-x2]="autoencoder 2 64 5000 l1 5e-4 16"
  [srcnn-955-x2-long]="srcnn-955 2 48 70000 mse 5e-4 16 srcnn-955-x2"
  [srcnn-955-x3-long]="srcnn-955 3 48 35000 mse 5e-4 16 srcnn-955-x3"
  [srcnn-955-x4-long]="srcnn-955 4 64 70000 mse 5e-4 16 srcnn-955-x4"
)
# Options beyond the common ones, per recipe.
declare -A extra=(
  [srcnn-955-x2-long]="--ema 0.999 --rescale 0.6,0.7,0.8,0.9,1"
  [srcnn-955-x3-long]="--ema 0.999 --rescale 0.6,0.7,0.8,0.9,1"
  [srcnn-955-x4-long]="--ema 0.999 --rescale 0.6,0.7,0.8,0.9,1"
)
names=("$@")
[ ${#names[@]} -gt 0 ] || names=(srcnn-955-x3 srcnn-955-x3-long srcnn-955-x2 srcnn-955-x2-long srcnn-955-x4 srcnn-955-x4-long compact-x3 compact-x2 compact-x4
         fsrcnn-x3 fsrcnn-x3-mse espcn-x3 fsrcnn-x2 fsrcnn-x4 espcn-x2 espcn-x4 autoencoder-x2)
for name in "${names[@]}"; do
  read -r model scale patch steps loss lr batch start <<<"${recipe[$name]}"
  read -r -a options <<<"${extra[$name]:-}"
  run=runs/$name
  resume=()
  [ -f "$run/checkpoint.pt" ] && resume=(--resume)
  [ -n "$start" ] && [ ${#resume[@]} -eq 0 ] && resume=(--init "runs/$start/model.safetensors")
  # Short runs (the autoencoder) validate more often than every 2000 steps.
  epoch_steps=$(( steps < 20000 ? 500 : steps > 50000 ? 5000 : 2000 ))
  "$superres" train --model "$model" --scale "$scale" --train "$data/T91" --train "$data/BSD200" \
    --val "$data/Set5" -o "$run" --steps "$steps" --epoch-steps "$epoch_steps" --patch-size "$patch" \
    --batch-size "$batch" --lr "$lr" --loss "$loss" --precision bf16 --seed 0 "${resume[@]}" "${options[@]}"
  cp "$run/model.safetensors" "src/superres/models/weights/$model-x$scale.safetensors"
  mkdir -p docs/results/training-logs && cp "$run/log.csv" "docs/results/training-logs/$name.csv"
done
