#!/usr/bin/env bash
# The GPU check, unattended, under 8 minutes on one recent NVIDIA GPU: builds, then runs the
# tutorial job (caformer_s18_384, images_96.zip + image_metadata_new.csv, 3 epochs, batch 32,
# learning rate 0.001, seed 42, horizontal flip, 70/10/20) at the model's own 384x384, with
# `--device cuda --precision auto` (bf16 autocast), and the same job with the Python reference
# (bench/reference.py --device cuda --precision bf16); prints wall times, peak host RSS, phases
# and the GPU's name. Needs the test set-up (scripts/setup-test.sh) or its cache, and ../shared/data/ham10000
# (or HAM10000_DIR).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup-test.sh
cargo build --release --quiet
ham="${HAM10000_DIR:-../shared/data/ham10000}"
out="${BENCH_OUT:-$(mktemp -d)}"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
job=(--images "$ham/images_96.zip" --metadata "$ham/image_metadata_new.csv" --epochs 3 --batch-size 32 --learning-rate 0.001 --seed 42)
rss_mb() { sed -n 's/.*Maximum resident set size (kbytes): \([0-9]*\).*/\1/p' "$1" | awk '{printf "%.0f", $1/1024}'; }
wall_s() { sed -n 's/.*Elapsed (wall clock) time (h:mm:ss or m:ss): \(.*\)/\1/p' "$1" | awk -F: '{s=0; for (i=1;i<=NF;i++) s=s*60+$i; printf "%.1f", s}'; }
timeout 200 /usr/bin/time -v target/release/image-learner train "${job[@]}" --model caformer_s18_384 --image-size 384 \
  --use-pretrained false --augmentation horizontal_flip --split 70/10/20 --device cuda --precision auto \
  --output-dir "$out/ours" 2>"$out/ours.log" || echo "ours failed: $(tail -3 "$out/ours.log")"
timeout 200 /usr/bin/time -v "$IMAGE_LEARNER_PYTHON" bench/reference.py train "${job[@]}" --model caformer_s18_384 \
  --image-size 384 --device cuda --precision bf16 --fused-adam --workers 4 --out "$out/py" 2>"$out/py.log" || echo "reference failed: $(tail -3 "$out/py.log")"
echo "| | wall time | peak host RSS | phases |"
echo "|---|---|---|---|"
echo "| ours (cuda, $(grep -o 'arithmetic: .*' "$out/ours.log" | sed 's/arithmetic: //')) | $(wall_s "$out/ours.log") s | $(rss_mb "$out/ours.log") MB | $(grep '^time:' "$out/ours.log" | sed 's/^time: //') |"
echo "| Python reference (cuda, bf16) | $(wall_s "$out/py.log") s | $(rss_mb "$out/py.log") MB | $(grep '^time:' "$out/py.log" | sed 's/^time: //') |"
echo "(logs in $out)"
