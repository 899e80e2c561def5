#!/usr/bin/env bash
# Standard-protocol PSNR/SSIM of the shipped models beside the published figures.
# Usage: benchmarks/quality.sh [MODELS] [SCALES]   (default: bicubic,srcnn,default,fsrcnn,espcn; 2,3,4)
# (the autoencoder, shipped at x2 only, is measured by benchmarks/models.py)
# Writes docs/results/quality.{md,json}. Needs ../shared/datasets (Set5, Set14).
set -euo pipefail
cd "$(dirname "$0")/.."
models=${1:-bicubic,srcnn,default,fsrcnn,espcn}
scales=${2:-2,3,4}
data=../shared/datasets
[ -d "$data/Set5" ] || { echo "skipped: $data/Set5 is absent"; exit 0; }
command=".venv/bin/superres benchmark --models $models --scales $scales --datasets $data/Set5 --datasets $data/Set14 --json docs/results/quality.json --markdown docs/results/quality.table.md"
$command
{
  echo "# Quality: standard protocol (Y of BT.601, border = scale, MATLAB-bicubic LR)"
  echo
  echo "Measured $(date -u +%Y-%m-%d) on this machine with:"
  echo
  echo "    benchmarks/quality.sh $models $scales"
  echo "    # which runs: ${command/$data/../shared/datasets}"
  echo
  echo "Each cell: ours PSNR dB / SSIM, then the published figure (PSNR / SSIM where the paper gives it)."
  echo
  cat docs/results/quality.table.md
} > docs/results/quality.md
rm docs/results/quality.table.md
