#!/usr/bin/env bash
# The performance benchmark (not part of the tests): ours against the Python reference
# (bench/reference.py: PyTorch 2.13, timm, scikit-learn) in the same run on the same machine,
# printed as Markdown tables. Usage: bench/run.sh [SECTION ...], sections: throughput ema augment
# tta recipe ingest e2e explain accuracy decisions regression ludwig (default: all), and scale
# (data larger than memory; run on its own, as it draws 60k images). Needs ../shared/data/ham10000 (or HAM10000_DIR).
# Takes about 45 minutes on 2 cores; run it alone, as every figure is a ratio of two timings.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup-test.sh
# BENCH_BIN: a copy of the binary to measure, so that a rebuild during a long run changes nothing.
if [[ -z "${BENCH_BIN:-}" ]]; then cargo build --release --quiet; fi
bin="${BENCH_BIN:-target/release/image-learner}"
py="$IMAGE_LEARNER_PYTHON"
ham="${HAM10000_DIR:-../shared/data/ham10000}"
out="${BENCH_OUT:-$(mktemp -d)}"
reps="${BENCH_REPS:-3}"
sections="${*:-throughput ema augment tta recipe ingest e2e explain accuracy decisions regression ludwig}"
ips() { sed -n 's/.*"images_per_second": *\([0-9.]*\).*/\1/p'; }
median() { sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
rss_mb() { sed -n 's/.*Maximum resident set size (kbytes): \([0-9]*\).*/\1/p' "$1" | awk '{printf "%.0f", $1/1024}'; }
wall_s() { sed -n 's/.*Elapsed (wall clock) time (h:mm:ss or m:ss): \(.*\)/\1/p' "$1" | awk -F: '{s=0; for (i=1;i<=NF;i++) s=s*60+$i; printf "%.1f", s}'; }
echo "# image-learner benchmark, $(date -u +%Y-%m-%d), $(nproc) cores: $(lscpu | sed -n 's/Model name: *//p')"
echo "CPU bf16 support: $(grep -o -w -E 'amx_bf16|avx512_bf16' /proc/cpuinfo | sort -u | tr '\n' ' ')"

if [[ " $sections " == *" throughput "* ]]; then
  echo
  echo "## Training throughput (images/s, batch 32, 96x96, median of $reps, interleaved)"
  echo
  # Ours refuses --precision bf16 on a CPU without AVX512-BF16 or AMX: those columns are skipped.
  bf16="$(grep -o -w -E 'amx_bf16|avx512_bf16' /proc/cpuinfo | head -1 || true)"
  [[ -n "$bf16" ]] || echo "This CPU has neither AVX512-BF16 nor AMX: the bf16 columns are skipped (0.0)."
  echo "PyTorch's configurations: default (float32, contiguous, its default unfused Adam), channels-last,"
  echo "channels-last with bf16 autocast, and channels-last with the opt-in fused Adam. Ours: channels-last, fused Adam."
  echo
  echo "| model | PyTorch default | PyTorch channels-last | PyTorch channels-last bf16 | PyTorch channels-last fused Adam | ours fp32 | ours bf16 | ours best / PyTorch best | ours best / PyTorch default |"
  echo "|---|---|---|---|---|---|---|---|---|"
  for m in resnet18 efficientnet_lite0 caformer_s18; do
    for r in $(seq "$reps"); do
      "$py" bench/reference.py throughput "$m" --layout contiguous --precision fp32 | ips >>"$out/$m.py_default"
      "$bin" throughput "$m" --precision fp32 | ips >>"$out/$m.ours_fp32"
      "$py" bench/reference.py throughput "$m" --layout channels_last --precision fp32 | ips >>"$out/$m.py_cl"
      if [[ -n "$bf16" ]]; then
        "$bin" throughput "$m" --precision bf16 | ips >>"$out/$m.ours_bf16"
        "$py" bench/reference.py throughput "$m" --layout channels_last --precision bf16 | ips >>"$out/$m.py_cl_bf16"
      else
        echo 0 >>"$out/$m.ours_bf16"
        echo 0 >>"$out/$m.py_cl_bf16"
      fi
      "$py" bench/reference.py throughput "$m" --layout channels_last --precision fp32 --fused-adam | ips >>"$out/$m.py_cl_fused"
    done
    for k in py_default py_cl py_cl_bf16 py_cl_fused ours_fp32 ours_bf16; do declare "$k=$(median <"$out/$m.$k")"; done
    awk -v m="$m" -v a="$py_default" -v b="$py_cl" -v c="$py_cl_bf16" -v f="$py_cl_fused" -v d="$ours_fp32" -v e="$ours_bf16" 'BEGIN {
      pb = a; if (b > pb) pb = b; if (c > pb) pb = c; if (f > pb) pb = f; ob = (d > e ? d : e);
      printf "| %s | %.1f | %.1f | %.1f | %.1f | %.1f | %.1f | %.2fx | %.2fx |\n", m, a, b, c, f, d, e, ob / pb, ob / a }'
  done
fi

if [[ " $sections " == *" ema "* ]]; then
  echo
  echo "## The weights' moving average: cost of a training step (resnet18, batch 32, 96x96, fp32, 16 steps, median of $reps, interleaved)"
  rm -f "$out/ema.off" "$out/ema.on" "$out/ema.share"
  for _ in $(seq "$reps"); do
    "$bin" throughput resnet18 --precision fp32 --steps 16 | ips >>"$out/ema.off"
    "$bin" throughput resnet18 --precision fp32 --steps 16 --ema-decay 0.999 >"$out/ema.json"
    ips <"$out/ema.json" >>"$out/ema.on"
    sed -n 's/.*"ema_share": *\([0-9.e-]*\).*/\1/p' "$out/ema.json" >>"$out/ema.share"
  done
  echo
  echo "The runs' ratio is as noisy as the machine; the update's own share of each timed run (timed"
  echo "around every update, in the same run) is the figure to quote."
  echo
  echo "| images/s without | with --ema-decay 0.999 | ratio | the update's share of the run (median, range) |"
  echo "| --- | --- | --- | --- |"
  awk -v a="$(median <"$out/ema.off")" -v b="$(median <"$out/ema.on")" -v s="$(median <"$out/ema.share")" \
    -v lo="$(sort -g "$out/ema.share" | head -1)" -v hi="$(sort -g "$out/ema.share" | tail -1)" \
    'BEGIN {printf "| %.1f | %.1f | %+.1f%% | %.2f%% (%.2f-%.2f%%) |\n", a, b, (a / b - 1) * 100, s * 100, lo * 100, hi * 100}'
fi

if [[ " $sections " == *" ingest "* ]]; then
  echo
  echo "## Ingestion: HAM10000_200x150_dev.zip (6,379 JPEGs, 200x150) decoded and resized to 224x224"
  echo
  /usr/bin/time -v "$bin" throughput --images "$ham/HAM10000_200x150_dev.zip" \
    --metadata "$ham/HAM10000_200x150_dev_metadata.csv" --label-column dx --image-size 224 >"$out/ingest.json" 2>"$out/ingest.time"
  echo "ours: $(ips <"$out/ingest.json" | awk '{printf "%.0f", $1}') images/s, peak RSS $(rss_mb "$out/ingest.time") MB"
fi

if [[ " $sections " == *" augment "* ]]; then
  echo
  echo "## The field's augmentations keep the trainer fed: one epoch of images_96.zip + image_metadata_split.csv"
  echo
  echo "random_resized_crop, color_jitter and trivial_augment with a horizontal flip, made on the one batch"
  echo "thread; the share of training time the trainer waited for batches (the \`time:\` line)."
  echo
  echo "| model | input | waiting, flip only | waiting, with the three |"
  echo "| --- | --- | --- | --- |"
  for m in resnet18 efficientnet_lite0; do
    for size in 96 224; do
      row="| $m | ${size}x${size}"
      for augs in horizontal_flip horizontal_flip,random_resized_crop,color_jitter,trivial_augment; do
        "$bin" train --images "$ham/images_96.zip" --metadata "$ham/image_metadata_split.csv" --split-column split \
          --model "$m" --use-pretrained false --epochs 1 --image-size "$size" --augmentation "$augs" --explain 0 \
          --output-dir "$out/augment" 2>"$out/augment.log" >/dev/null
        row="$row | $(sed -n 's/.*(waiting for batches \([0-9.]*%\)).*/\1/p' "$out/augment.log")"
      done
      echo "$row |"
    done
  done
fi

if [[ " $sections " == *" tta "* ]]; then
  echo
  echo "## Test-time augmentation: predict on images_96.zip (1,400 images, resnet18 at 96x96), seconds, median of $reps, interleaved"
  echo
  "$bin" train --images "$ham/images_96.zip" --metadata "$ham/image_metadata_split.csv" --split-column split \
    --model resnet18 --use-pretrained false --epochs 1 --explain 0 --output-dir "$out/tta" >/dev/null 2>&1
  rm -f "$out"/tta.*.s
  for _ in $(seq "$reps"); do
    for t in none flip flip4; do
      /usr/bin/time -f %e -o "$out/tta.time" "$bin" predict --model "$out/tta/best_model.zip" --images "$ham/images_96.zip" \
        --tta "$t" --output "$out/tta.csv" 2>/dev/null
      cat "$out/tta.time" >>"$out/tta.$t.s"
    done
  done
  echo "| --tta none | flip | flip4 | flip / none | flip4 / none |"
  echo "| --- | --- | --- | --- | --- |"
  awk -v a="$(median <"$out/tta.none.s")" -v b="$(median <"$out/tta.flip.s")" -v c="$(median <"$out/tta.flip4.s")" \
    'BEGIN {printf "| %.1f | %.1f | %.1f | %.2fx | %.2fx |\n", a, b, c, b / a, c / a}'
fi

if [[ " $sections " == *" recipe "* ]]; then
  # Which options make the best model on real data? Pretrained EfficientNet-Lite0 (the real
  # ImageNet weights the test set-up installs), the tutorial's form otherwise, 3 seeds per row.
  # RECIPE_DATA: a (tutorial images, lesion-level split) or b (the imbalanced dev set, dx, grouped
  # by lesion_id); RECIPE_EPOCHS (10); RECIPE_ROWS (names from the list below, default all).
  # A tta_* row re-predicts the Best Models of the row RECIPE_TTA_BASE (today) when it has run;
  # its seconds are then the predict command's.
  data="${RECIPE_DATA:-a}"
  epochs="${RECIPE_EPOCHS:-10}"
  seeds="${RECIPE_SEEDS:-42 1 7}"
  mkdir -p "$out/recipe"
  "$bin" weights import efficientnet_lite0 "$IMAGE_LEARNER_LITE0_PTH" --weights-dir "$out/weights" >/dev/null
  if [[ "$data" == a ]]; then
    input=(--images "$ham/images_96.zip" --metadata "$ham/image_metadata_split.csv" --split-column split)
    what="the tutorial images (96x96) with their lesion-level split"
  else
    input=(--images "$ham/HAM10000_200x150_dev.zip" --metadata "$ham/HAM10000_200x150_dev_metadata.csv"
           --label-column dx --group-column lesion_id --split 70/10/20)
    what="the imbalanced dev set (6,379 images, at 96x96 unless the row sets a size), dx, 70/10/20 grouped by lesion_id"
  fi
  declare -A rows=(
    [today]=""
    [default]=""
    [warmup_cosine]="--lr-schedule cosine --warmup-epochs 1"
    [onecycle]="--lr-schedule onecycle"
    [freeze1]="--freeze-epochs 1"
    [backbone_0.1]="--backbone-lr-mult 0.1"
    [layer_decay_0.7]="--layer-decay 0.7"
    [ema]="--ema-decay 0.999"
    [smoothing_0.1]="--label-smoothing 0.1"
    [balance_loss]="--class-balance loss"
    [balance_sampler]="--class-balance sampler"
    [crop]="--augmentation random_resized_crop"
    [jitter]="--augmentation color_jitter"
    [trivial]="--augmentation trivial_augment"
    [tta_none]="--tta none"
    [tta_flip]="--tta flip"
    [tta_flip4]="--tta flip4"
    [size_224]="--image-size 224"
    [ema_0.99]="--ema-decay 0.99"
    [smooth_freeze]="--label-smoothing 0.1 --freeze-epochs 1"
    [smooth_freeze_cosine]="--label-smoothing 0.1 --freeze-epochs 1 --lr-schedule cosine"
    [smooth_cosine]="--label-smoothing 0.1 --lr-schedule cosine --warmup-epochs 1"
    [py_today]="--class-balance none"
    [py_default]="--label-smoothing 0.1 --class-balance auto"
    [py_default_128]="--label-smoothing 0.1 --class-balance auto --image-size 128 --tta flip"
    [py_default_ema]="--label-smoothing 0.1 --class-balance auto --image-size 128 --tta flip --ema-decay 0.99"
    [smooth_crop]="--label-smoothing 0.1 --augmentation random_resized_crop"
    [smooth_trivial]="--label-smoothing 0.1 --augmentation trivial_augment"
    [smooth_val_bacc]="--label-smoothing 0.1 --validation-metric balanced_accuracy"
    [smooth_balance]="--label-smoothing 0.1 --class-balance auto"
    [smooth_size_128]="--label-smoothing 0.1 --image-size 128"
    [smooth_size_160]="--label-smoothing 0.1 --image-size 160"
    [smooth_backbone]="--label-smoothing 0.1 --backbone-lr-mult 0.1"
    [smooth_freeze_backbone]="--label-smoothing 0.1 --freeze-epochs 1 --backbone-lr-mult 0.1"
    [smooth_tta_flip]="--label-smoothing 0.1 --tta flip"
    [smooth_size_128_tta_flip]="--label-smoothing 0.1 --image-size 128 --tta flip"
    [smooth_balance_tta_flip]="--label-smoothing 0.1 --class-balance auto --tta flip"
    [default_val_bacc]="--validation-metric balanced_accuracy"
    [default_size_128]="--image-size 128"
    [default_sampler]="--class-balance sampler"
    [default_cosine]="--lr-schedule cosine --warmup-epochs 1"
    [default_cv_5]="--cross-validation 5"
    [default_ema_0.99]="--ema-decay 0.99"
  )
  order="${RECIPE_ROWS:-today default warmup_cosine onecycle freeze1 backbone_0.1 layer_decay_0.7 ema smoothing_0.1 balance_loss balance_sampler crop jitter trivial tta_flip tta_flip4 size_224}"
  echo
  echo "## Recipe: efficientnet_lite0 pretrained, $what, $epochs epochs, seeds $seeds"
  echo
  echo "Each row: the tutorial's options (Adam 0.001, batch 32, horizontal flip) plus the row's (an --augmentation adds to the flip); today: the defaults before this benchmark (every row but default* keeps label smoothing 0, class balance none, TTA none, no moving average and the images' own size unless it sets them); default: this build's defaults (default_*: with the row's options); mean ± standard deviation over the seeds."
  echo
  echo "| row | options | test accuracy | balanced accuracy | macro F1 | best epoch | seconds |"
  echo "| --- | --- | --- | --- | --- | --- | --- |"
  for row in $order; do
    rm -f "$out/recipe.$row" "$out/recipe.$row.oof"
    for seed in $seeds; do
      dir="$out/recipe/$row-$seed"
      base="$out/recipe/${RECIPE_TTA_BASE:-today}-$seed"
      if [[ $row == py_* ]]; then
        # The same recipe in PyTorch/timm (bench/reference.py), on the file's split: data set a only.
        [[ "$data" == a ]] || { echo "| $row | the Python reference runs on data set a only |"; continue 2; }
        start=$(date +%s.%N)
        # shellcheck disable=SC2086
        "$py" bench/reference.py train --images "${input[1]}" --metadata "${input[3]}" --split-column split \
          --model efficientnet_lite0 --weights "$out/weights/efficientnet_lite0.safetensors" --fused-adam \
          --epochs "$epochs" --batch-size 32 --learning-rate 0.001 --seed "$seed" ${rows[$row]} --out "$dir" \
          >"$dir.log" 2>&1 || { echo "| $row | failed: see $dir.log |"; continue 2; }
        end=$(date +%s.%N)
        "$py" -c "import json,sys; m=json.load(open(sys.argv[1])); t=m['test']; print(t['accuracy'], t['balanced_accuracy'], t['f1_macro'], m['best_epoch'], float(sys.argv[3]) - float(sys.argv[2]))" \
          "$dir/metrics.json" "$start" "$end" >>"$out/recipe.$row"
        continue
      fi
      if [[ $row == tta_* && -f "$base/best_model.zip" ]]; then
        # Paired: the base row's own Best Models predict their test images again with the TTA, so
        # the difference is the TTA's alone (the best epoch, chosen without it, is the base's).
        "$py" -c "import csv,sys; w=csv.writer(open(sys.argv[2],'w')); w.writerow(['image','label']); [w.writerow([r['image_path'],r['true_label']]) for r in csv.DictReader(open(sys.argv[1]))]" \
          "$base/predictions.csv" "$dir.test.csv"
        start=$(date +%s.%N)
        # shellcheck disable=SC2086
        "$bin" predict --model "$base/best_model.zip" --images "${input[1]}" --metadata "$dir.test.csv" --image-column image \
          --label-column label ${rows[$row]} --output "$dir.csv" >"$dir.log" 2>&1 || { echo "| $row | failed: see $dir.log |"; continue 2; }
        end=$(date +%s.%N)
        "$py" -c "import csv,json,sys; from sklearn import metrics as m; r=list(csv.DictReader(open(sys.argv[1]))); t=[x['true_label'] for x in r]; p=[x['predicted_label'] for x in r]; \
print(m.accuracy_score(t,p), m.balanced_accuracy_score(t,p), m.f1_score(t,p,average='macro'), json.load(open(sys.argv[2]))['best_epoch'], float(sys.argv[4]) - float(sys.argv[3]))" \
          "$dir.csv" "$base/metrics.json" "$start" "$end" >>"$out/recipe.$row"
        continue
      fi
      opts="${rows[$row]}"
      if [[ $row != default* ]]; then
        # Today's recipe, where the row leaves an option alone: the defaults before this benchmark.
        [[ $opts == *--label-smoothing* ]] || opts="$opts --label-smoothing 0"
        [[ $opts == *--class-balance* ]] || opts="$opts --class-balance none"
        [[ $opts == *--tta* ]] || opts="$opts --tta none"
        [[ $opts == *--ema-decay* ]] || opts="$opts --ema-decay 0"
        [[ $data != a || $opts == *--image-size* ]] || opts="$opts --image-size 96"
      fi
      # Data set b at the images' own 200 pixels costs about 4x: 96 unless the row sets a size.
      [[ $data != b || $opts == *--image-size* ]] || opts="$opts --image-size 96"
      # Cross-validation deals the non-test images into folds, grouped by lesion: on data set a the
      # split file's rows gain their lesion_id (image_metadata_lesions.csv), as b's have.
      args=("${input[@]}")
      if [[ $opts == *--cross-validation* && $data == a ]]; then
        "$py" -c "import csv,sys; l={r['image_path']:r['lesion_id'] for r in csv.DictReader(open(sys.argv[2]))}; w=csv.writer(open(sys.argv[3],'w')); w.writerow(['image_path','label','split','lesion_id']); [w.writerow([r['image_path'],r['label'],r['split'],l[r['image_path']]]) for r in csv.DictReader(open(sys.argv[1]))]" \
          "$ham/image_metadata_split.csv" "$ham/image_metadata_lesions.csv" "$out/recipe/a_lesions.csv"
        args=(--images "$ham/images_96.zip" --metadata "$out/recipe/a_lesions.csv" --split-column split --group-column lesion_id)
      fi
      start=$(date +%s.%N)
      # shellcheck disable=SC2086
      "$bin" train "${args[@]}" --model efficientnet_lite0 --use-pretrained true --weights-dir "$out/weights" \
        --epochs "$epochs" --batch-size 32 --learning-rate 0.001 --augmentation horizontal_flip --seed "$seed" \
        --explain 0 $opts --output-dir "$dir" >"$dir.log" 2>&1 || { echo "| $row | failed: see $dir.log |"; continue 2; }
      end=$(date +%s.%N)
      "$py" -c "import json,sys; m=json.load(open(sys.argv[1])); t=m['test']; print(t['accuracy'], t['balanced_accuracy'], t['macro_f1'], m['best_epoch'], float(sys.argv[3]) - float(sys.argv[2]))" \
        "$dir/metrics.json" "$start" "$end" >>"$out/recipe.$row"
      if [[ $opts == *--cross-validation* ]]; then
        "$py" -c "import json,sys; o=json.load(open(sys.argv[1]))['cross_validation']['out_of_fold']; print(o['accuracy'], o['balanced_accuracy'], o['macro_f1'])" \
          "$dir/metrics.json" >>"$out/recipe.$row.oof"
      fi
    done
    "$py" - "$out/recipe.$row" "$row" "${rows[$row]:-(none)}" <<'PY'
import statistics, sys
rows = [list(map(float, l.split())) for l in open(sys.argv[1])]
cols = list(zip(*rows))
def cell(v, f):
    return f"{statistics.mean(v):{f}} ± {statistics.stdev(v) if len(v) > 1 else 0:{f}}"
print(f"| {sys.argv[2]} | `{sys.argv[3]}` | " + " | ".join(cell(c, f) for c, f in zip(cols, [".3f", ".3f", ".3f", ".1f", ".0f"])) + " |")
PY
    if [[ -f "$out/recipe.$row.oof" ]]; then
      # The ensemble's test figures are the row's; its out-of-fold estimate, over the same seeds:
      "$py" - "$out/recipe.$row.oof" "$row" <<'PY'
import statistics, sys
cols = list(zip(*[list(map(float, l.split())) for l in open(sys.argv[1])]))
cell = lambda v: f"{statistics.mean(v):.3f} ± {statistics.stdev(v) if len(v) > 1 else 0:.3f}"
print(f"| {sys.argv[2]}, out-of-fold | (every non-test image, by the fold model that never saw it) | " + " | ".join(cell(c) for c in cols) + " | | |")
PY
      rm -f "$out/recipe.$row.oof"
    fi
  done
fi

if [[ " $sections " == *" scale "* ]]; then
  # Data larger than memory (--cache, src/data/store.rs). The samples are the project's own
  # (`image-learner sample --jpeg`, 224x224 JPEGs in a ZIP) at SCALE_COUNTS images (1400 10000
  # 50000), plus the 6,379-image dev set. Three tables: the data path's throughput against the
  # in-memory one (interleaved, SCALE_REPS each); peak memory and time to the first batch as the
  # data set grows (--cache none); and --cache auto under GALAXY_MEMORY_MB=2048 on the largest.
  # SCALE_TABLES picks among them (throughput memory auto, default all).
  tables=" ${SCALE_TABLES:-throughput memory auto} "
  mkdir -p "$out/scale"
  counts="${SCALE_COUNTS:-1400 10000 50000}"
  for n in $counts; do
    d="$out/scale/sample-$n"
    [[ -f "$d/sample_images.zip" ]] || "$bin" sample --output-dir "$d" --per-class $(( (n + 2) / 3 )) --image-size 224 --seed 1 --jpeg 2>/dev/null
  done
  # train_row DIR DATA_ZIP DATA_CSV ARGS...: ROW_EPOCHS epochs (1), timed; prints "rss_mb data_s
  # train_images_per_s".
  train_row() {
    local dir=$1 zip=$2 csv=$3 epochs=${ROW_EPOCHS:-1}; shift 3
    /usr/bin/time -v "$bin" train --images "$zip" --metadata "$csv" --use-pretrained false --epochs "$epochs" --explain 0 \
      --seed 1 --output-dir "$dir" "$@" >"$dir.log" 2>&1 || { echo "failed: see $dir.log" >&2; return 1; }
    "$py" - "$dir.log" "$epochs" <<'PY'
import re, sys
log = open(sys.argv[1]).read()
train = int(re.search(r"split: (\d+) train", log).group(1)) * int(sys.argv[2])
data, training = map(float, re.search(r"time: data ([\d.]+) s, training ([\d.]+) s", log).groups())
rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", log).group(1)) / 1024
print(f"{rss:.0f} {data:.1f} {train / training:.1f}")
PY
  }
  csv_mb() { awk -v b="$(stat -c %s "$1")" 'BEGIN {printf "%.1f", b / 1048576}'; }
  first="$out/scale/sample-${counts%% *}"
  if [[ $tables == *" throughput "* ]]; then
  echo
  echo "## Scale: the data path's training throughput, images/s (sample of ${counts%% *} JPEGs, 1 epoch, median of ${SCALE_REPS:-2}, interleaved)"
  echo
  echo "| model | size | in memory (--cache ram) | from the ZIP (--cache none) | ratio |"
  echo "| --- | --- | --- | --- | --- |"
  for model in resnet18 efficientnet_lite0; do
    for size in 96 224; do
      rm -f "$out/scale.ram" "$out/scale.none"
      for rep in $(seq "${SCALE_REPS:-2}"); do
        for cache in ram none; do
          train_row "$out/scale/tp-$model-$size-$cache-$rep" "$first/sample_images.zip" "$first/sample_metadata.csv" \
            --model "$model" --image-size "$size" --cache "$cache" | awk '{print $3}' >>"$out/scale.$cache"
        done
      done
      r=$(median <"$out/scale.ram"); z=$(median <"$out/scale.none")
      echo "| $model | $size | $r | $z | $(awk -v a="$z" -v b="$r" 'BEGIN {printf "%.2f", a / b}') |"
    done
  done
  fi
  if [[ $tables == *" memory "* ]]; then
  echo
  echo "## Scale: memory and time to the first batch as the data grow (--cache none, resnet18, 1 epoch at 64x64)"
  echo
  echo "| data | images | metadata CSV (MB) | peak RSS (MB) | ingestion, to the first batch (s) | training images/s |"
  echo "| --- | --- | --- | --- | --- | --- |"
  for n in $counts dev; do
    if [[ $n == dev ]]; then
      zip="$ham/HAM10000_200x150_dev.zip"; csv="$ham/HAM10000_200x150_dev_metadata.csv"; label=(--label-column dx); what="HAM10000 dev set"
    else
      zip="$out/scale/sample-$n/sample_images.zip"; csv="$out/scale/sample-$n/sample_metadata.csv"; label=(); what="sample, 224x224 JPEG"
    fi
    read -r rss data ips < <(train_row "$out/scale/rss-$n" "$zip" "$csv" "${label[@]}" --model resnet18 --image-size 64 --cache none)
    images=$(($(wc -l <"$csv") - 1))
    echo "| $what | $images | $(csv_mb "$csv") | $rss | $data | $ips |"
  done
  # The allocator's working set grows with the steps trained until it levels off, so the
  # smallest sample trained for as many steps as the largest one's epoch separates what the
  # images cost from what the length of training costs.
  first_n=${counts%% *} last_n=${counts##* }
  if (( last_n > first_n )); then
    epochs=$(( (last_n + first_n / 2) / first_n ))
    csv="$first/sample_metadata.csv"
    read -r rss data ips < <(ROW_EPOCHS=$epochs train_row "$out/scale/rss-$first_n-steps" "$first/sample_images.zip" "$csv" \
      --model resnet18 --image-size 64 --cache none)
    echo "| sample, 224x224 JPEG, $epochs epochs (the steps of one $last_n-image epoch) | $(($(wc -l <"$csv") - 1)) | $(csv_mb "$csv") | $rss | $data | $ips |"
  fi
  fi
  last="$out/scale/sample-${counts##* }"
  if [[ $tables == *" auto "* ]]; then
  echo
  echo "## Scale: --cache auto under GALAXY_MEMORY_MB=2048 (sample of ${counts##* } images at 96x96, resnet18, 1 epoch)"
  echo
  if GALAXY_MEMORY_MB=2048 train_row "$out/scale/auto" "$last/sample_images.zip" "$last/sample_metadata.csv" --model resnet18 --image-size 96 >"$out/scale.auto"; then
    read -r rss data ips <"$out/scale.auto"
    echo "Trained: $(sed -n 's/^decoded images: //p' "$out/scale/auto.log"); peak RSS $rss MB, $ips training images/s."
  else
    echo "Failed: see $out/scale/auto.log"
  fi
  fi
fi

if [[ " $sections " == *" e2e "* ]]; then
  echo
  echo "## End to end: the tutorial's options, caformer_s18_384 on images_96.zip + image_metadata_new.csv (96x96), 3 epochs"
  echo
  # Twice: train figures from the best epoch's training pass (the default of both), and with the
  # training images evaluated again (--evaluate-train), the reference doing the same each time.
  # The reference uses the fused Adam as ours does (PyTorch's default on CPU is the unfused one).
  echo "| | train figures | wall time | peak RSS | evaluation + report share | phases |"
  echo "|---|---|---|---|---|---|"
  for mode in pass again; do
    ours_flag=(); py_flag=()
    if [[ $mode == again ]]; then ours_flag=(--evaluate-train true); py_flag=(--evaluate-train); fi
    /usr/bin/time -v "$bin" train --images "$ham/images_96.zip" --metadata "$ham/image_metadata_new.csv" \
      --model caformer_s18_384 --epochs 3 --batch-size 32 --use-pretrained false --learning-rate 0.001 --seed 42 \
      --augmentation horizontal_flip --split 70/10/20 "${ours_flag[@]}" --output-dir "$out/ours_e2e_$mode" \
      >/dev/null 2>"$out/ours_e2e_$mode.log"
    /usr/bin/time -v "$py" bench/reference.py train --images "$ham/images_96.zip" --metadata "$ham/image_metadata_new.csv" \
      --model caformer_s18_384 --epochs 3 --fused-adam "${py_flag[@]}" --out "$out/py_e2e_$mode" 2>"$out/py_e2e_$mode.log"
    what=$([[ $mode == again ]] && echo "evaluated again" || echo "training pass")
    for who in ours py; do
      log="$out/${who}_e2e_$mode.log"; w=$(wall_s "$log")
      # Seconds after training: the final evaluation plus (ours) the report and outputs.
      share=$(grep '^time:' "$log" | sed -n 's/.*final evaluation \([0-9.]*\) s\(, explanations \([0-9.]*\) s\)\{0,1\}\(, report and outputs \([0-9.]*\) s\)\{0,1\}.*/\1 \3 \5/p' \
        | awk -v w="$w" '{printf "%.1f%%", 100 * ($1 + $2 + $3) / w}')
      name=$([[ $who == ours ]] && echo ours || echo "Python reference")
      echo "| $name | $what | $w s | $(rss_mb "$log") MB | $share | $(grep '^time:' "$log" | sed 's/^time: //') |"
      declare "${who}_$mode=$w"
    done
  done
  awk -v a="$ours_pass" -v b="$py_pass" -v c="$ours_again" -v d="$py_again" 'BEGIN {
    printf "\nours is %.2fx faster end to end (%.2fx with the training images evaluated again)\n", b / a, d / c }'
fi

if [[ " $sections " == *" explain "* ]]; then
  # What the report's heatmaps cost: the tutorial run with the default --explain 12 against
  # --explain 0, interleaved, and the explanation stage's own seconds from the log.
  echo
  echo "## Explanations: cost in the tutorial run (caformer_s18_384, images_96.zip, 96x96, 3 epochs), median of $reps"
  echo
  for r in $(seq "$reps"); do
    for n in 12 0; do
      /usr/bin/time -v "$bin" train --images "$ham/images_96.zip" --metadata "$ham/image_metadata_new.csv" \
        --model caformer_s18_384 --epochs 3 --batch-size 32 --use-pretrained false --learning-rate 0.001 --seed 42 \
        --augmentation horizontal_flip --split 70/10/20 --explain "$n" --output-dir "$out/explain_${n}_$r" \
        >/dev/null 2>"$out/explain_${n}_$r.log"
      wall_s "$out/explain_${n}_$r.log" >>"$out/explain_$n.wall"
      sed -n 's/.*explanations \([0-9.]*\) s.*/\1/p' "$out/explain_${n}_$r.log" >>"$out/explain_$n.stage"
    done
  done
  with=$(median <"$out/explain_12.wall"); without=$(median <"$out/explain_0.wall"); stage=$(median <"$out/explain_12.stage")
  echo "| | wall time | explanation stage |"
  echo "|---|---|---|"
  echo "| --explain 12 (default) | $with s | $stage s |"
  echo "| --explain 0 | $without s | $(median <"$out/explain_0.stage") s |"
  awk -v a="$with" -v b="$without" -v s="$stage" 'BEGIN {
    printf "\nthe explanations add %.1f%% to the run by wall time (%.1f%% by their own stage)\n", 100 * (a - b) / b, 100 * s / b }'
fi

if [[ " $sections " == *" accuracy "* ]]; then
  # Does bf16 cost accuracy, and is any loss ours or bf16's own? The same job in both precisions,
  # ours and the Python reference, for each seed (BENCH_SEEDS). Not a timing: ours and the
  # reference run side by side, one thread each.
  seeds="${BENCH_SEEDS:-42 1 2}"
  echo
  echo "## Mixed precision and accuracy: efficientnet_lite0 from scratch, tutorial data (96x96), 10 epochs, test accuracy"
  echo
  echo "| seed | ours fp32 | ours bf16 | ours bf16 - fp32 | reference fp32 | reference bf16 | reference bf16 - fp32 |"
  echo "|---|---|---|---|---|---|---|"
  for seed in $seeds; do
    for p in fp32 bf16; do
      "$bin" train --images "$ham/images_96.zip" --metadata "$ham/image_metadata_new.csv" --threads 1 \
        --model efficientnet_lite0 --epochs 10 --batch-size 32 --use-pretrained false --learning-rate 0.001 --seed "$seed" \
        --augmentation horizontal_flip --split 70/10/20 --precision "$p" --output-dir "$out/acc_ours_${p}_$seed" \
        >/dev/null 2>"$out/acc_ours_${p}_$seed.log" &
      "$py" bench/reference.py train --images "$ham/images_96.zip" --metadata "$ham/image_metadata_new.csv" --threads 1 \
        --model efficientnet_lite0 --epochs 10 --seed "$seed" --layout channels_last --precision "$p" \
        --out "$out/acc_py_${p}_$seed" 2>"$out/acc_py_${p}_$seed.log" &
      wait
    done
    acc() { sed -n 's/.*test accuracy \([0-9.]*\).*/\1/p' "$out/acc_$1_$seed.log" | tail -1; }
    awk -v s="$seed" -v a="$(acc ours_fp32)" -v b="$(acc ours_bf16)" -v c="$(acc py_fp32)" -v d="$(acc py_bf16)" 'BEGIN {
      printf "| %s | %.3f | %.3f | %+.1f points | %.3f | %.3f | %+.1f points |\n", s, a, b, 100 * (b - a), c, d, 100 * (d - c) }' \
      | tee -a "$out/accuracy.rows"
  done
  awk -F'|' '{ o += $5 + 0; r += $8 + 0; n++ } END {
    printf "\nmean bf16 - fp32 over %d seeds: ours %+.1f points, reference %+.1f points\n", n, o / n, r / n }' "$out/accuracy.rows"
fi

if [[ " $sections " == *" decisions "* ]]; then
  # What the decisions fitted on the validation split buy on the test split: the same training
  # (same seed) decided twice, with the temperature and the tuned threshold (the defaults) and
  # without (--calibrate none, --threshold 0.5). Real ImageNet EfficientNet-Lite0 weights, the
  # tutorial's lesion-level split; binary: its mel and nv images (second class: nv).
  seeds="${BENCH_SEEDS:-42 1 2}"
  weights="$out/weights"
  "$bin" weights import efficientnet_lite0 "$IMAGE_LEARNER_LITE0_PTH" --weights-dir "$weights" >/dev/null
  awk -F, 'NR == 1 || $2 == "mel" || $2 == "nv"' "$ham/image_metadata_split.csv" >"$out/mel_nv.csv"
  fig() { "$py" -c "import json,sys; m=json.load(open(sys.argv[1]))['test']; print(eval(sys.argv[2]))" "$1/metrics.json" "$2"; }
  echo
  echo "## Decisions fitted on the validation split: efficientnet_lite0 (ImageNet), tutorial split (96x96), 5 epochs, test figures"
  echo
  echo "| task | seed | temperature | ECE none -> temperature | log loss none -> temperature | top-3 / top-5 accuracy | threshold | F1 (nv) at 0.5 -> tuned | accuracy at 0.5 -> tuned |"
  echo "|---|---|---|---|---|---|---|---|---|"
  for seed in $seeds; do
    for task in classification binary; do
      csv="$ham/image_metadata_split.csv"; [[ $task == binary ]] && csv="$out/mel_nv.csv"
      for mode in fitted plain; do
        flags=(); [[ $mode == plain ]] && flags=(--calibrate none) && [[ $task == binary ]] && flags+=(--threshold 0.5)
        "$bin" train --images "$ham/images_96.zip" --metadata "$csv" --task "$task" --model efficientnet_lite0 \
          --weights-dir "$weights" --epochs 5 --batch-size 32 --learning-rate 0.001 --seed "$seed" \
          --augmentation horizontal_flip "${flags[@]}" --output-dir "$out/dec_${task}_${mode}_$seed" >/dev/null 2>"$out/dec_${task}_${mode}_$seed.log"
      done
      a="$out/dec_${task}_fitted_$seed"; b="$out/dec_${task}_plain_$seed"
      t=$("$py" -c "import json,sys; print('%.3f' % json.load(open(sys.argv[1]))['decisions']['temperature'])" "$a/metrics.json")
      th=$("$py" -c "import json,sys; t=json.load(open(sys.argv[1]))['decisions']['threshold']; print('-' if t is None else '%.3f' % t)" "$a/metrics.json")
      topk=$(fig "$a" "' / '.join('%.3f' % t['accuracy'] for t in m['top_k_accuracy']) or '-'")
      f1='-'; acc='-'
      if [[ $task == binary ]]; then
        f1="$(fig "$b" "'%.3f' % m['per_class'][1]['f1']") -> $(fig "$a" "'%.3f' % m['per_class'][1]['f1']")"
        acc="$(fig "$b" "'%.3f' % m['accuracy']") -> $(fig "$a" "'%.3f' % m['accuracy']")"
      fi
      echo "| $task | $seed | $t | $(fig "$b" "'%.3f' % m['ece']") -> $(fig "$a" "'%.3f' % m['ece']") | $(fig "$b" "'%.3f' % m['log_loss']") -> $(fig "$a" "'%.3f' % m['log_loss']") | $topk | $th | $f1 | $acc |"
    done
  done
fi

if [[ " $sections " == *" regression "* ]]; then
  # Age from the dermoscopy image: the HAM10000 dev set's age column (empty for a few lesions,
  # left out), split by lesion so one lesion's photos share a split. Real ImageNet
  # EfficientNet-Lite0 weights. The baseline always predicts the training split's mean age.
  seeds="${BENCH_SEEDS:-42 1 2}"; size="${BENCH_REGRESSION_SIZE:-96}"; epochs="${BENCH_REGRESSION_EPOCHS:-6}"
  weights="$out/weights"
  [ -d "$weights" ] || "$bin" weights import efficientnet_lite0 "$IMAGE_LEARNER_LITE0_PTH" --weights-dir "$weights" >/dev/null
  echo
  echo "## Regression: age from the image, HAM10000 dev set, grouped by lesion_id, efficientnet_lite0 (ImageNet), ${size}x${size}, $epochs epochs, test figures"
  echo
  echo "| seed | test images | baseline MAE (training mean) | MAE [95% CI] | RMSE | R² [95% CI] | MAE / baseline | wall |"
  echo "|---|---|---|---|---|---|---|---|"
  for seed in $seeds; do
    run="$out/age_$seed"
    /usr/bin/time -v "$bin" train --images "$ham/HAM10000_200x150_dev.zip" --metadata "$ham/HAM10000_200x150_dev_metadata.csv" \
      --task regression --label-column age --group-column lesion_id --model efficientnet_lite0 --weights-dir "$weights" \
      --epochs "$epochs" --batch-size 32 --learning-rate 0.001 --seed "$seed" --augmentation horizontal_flip \
      --image-size "$size" --validation-metric mae --output-dir "$run" >/dev/null 2>"$run.log"
    "$py" - "$run" "$seed" "$(wall_s "$run.log")" <<'PY' | tee -a "$out/age.rows"
import csv, json, sys
run, seed, wall = sys.argv[1:]
m = json.load(open(f"{run}/metrics.json"))
t, ci, mean = m["test"], m["test_95ci"], m["target"]["mean"]
truth = [float(r["true_value"]) for r in csv.DictReader(open(f"{run}/predictions.csv"))]
base = sum(abs(v - mean) for v in truth) / len(truth)
print(f"| {seed} | {len(truth)} | {base:.2f} | {t['mae']:.2f} [{ci['mae']['low']:.2f}, {ci['mae']['high']:.2f}] | {t['rmse']:.2f} "
      f"| {t['r2']:.3f} [{ci['r2']['low']:.3f}, {ci['r2']['high']:.3f}] | {t['mae'] / base:.3f} | {float(wall):.0f} s |")
PY
  done
  "$py" - "$out/age.rows" <<'PY'
import statistics as st, sys
rows = [[c.strip() for c in l.strip().strip("|").split("|")] for l in open(sys.argv[1])]
mae = [float(r[3].split()[0]) for r in rows]; base = [float(r[2]) for r in rows]; ratio = [float(r[6]) for r in rows]
sd = lambda v: st.stdev(v) if len(v) > 1 else 0.0
print(f"\nover {len(rows)} seeds: test MAE {st.mean(mae):.2f} ± {sd(mae):.2f} (sd) years against {st.mean(base):.2f} for the "
      f"training mean; MAE / baseline {st.mean(ratio):.3f} ± {sd(ratio):.3f}")
PY
fi

if [[ " $sections " == *" ludwig "* ]]; then
  # The existing Galaxy tool (Python + Ludwig 0.10), measured on this kind of machine on the same
  # data, 3 epochs, batch 32, no pretrained weights (figures given in issue 6; Ludwig itself is
  # not installable here). It computes at 224x224 (resnet18, caformer_s18) whatever the images.
  echo
  echo "## Against the existing tool (Ludwig, 3 epochs, tutorial data, batch 32)"
  echo
  echo "| model | computed at | ours wall | ours peak RSS | Ludwig wall | Ludwig peak RSS | speed-up | memory |"
  echo "|---|---|---|---|---|---|---|---|"
  for spec in "resnet18 96 350 4096" "resnet18 224 350 4096" "caformer_s18 96 878 9933" "caformer_s18_384 96 3240 13824"; do
    read -r m size lw lrss <<<"$spec"
    /usr/bin/time -v "$bin" train --images "$ham/images_96.zip" --metadata "$ham/image_metadata_new.csv" \
      --model "$m" --epochs 3 --batch-size 32 --use-pretrained false --learning-rate 0.001 --seed 42 \
      --augmentation horizontal_flip --split 70/10/20 --image-size "$size" --output-dir "$out/ludwig_${m}_$size" \
      >/dev/null 2>"$out/ludwig_${m}_$size.log"
    w=$(wall_s "$out/ludwig_${m}_$size.log"); r=$(rss_mb "$out/ludwig_${m}_$size.log")
    awk -v m="$m" -v s="$size" -v w="$w" -v r="$r" -v lw="$lw" -v lr="$lrss" 'BEGIN {
      printf "| %s | %sx%s | %.0f s | %d MB | %d s | %d MB | %.1fx | %.2f |\n", m, s, s, w, r, lw, lr, lw / w, r / lr }'
  done
fi
echo
echo "(raw outputs in $out)"
