#!/usr/bin/env bash
# The main job on the bundled sample: set-up (once), build, train, and print where the report is.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
cargo build --release --quiet
out="${1:-out/sample}"
./target/release/image-learner train \
  --images test-data/sample_images.zip --metadata test-data/sample_metadata.csv \
  --task classification --model resnet18 --epochs 12 --batch-size 32 \
  --use-pretrained false --fine-tune true --learning-rate 0.001 --seed 42 \
  --augmentation horizontal_flip --split 70/10/20 --output-dir "$out"
echo "Outputs in $out: best_model.zip, report.html, training_history.csv, predictions.csv, metrics.json"
