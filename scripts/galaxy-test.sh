#!/usr/bin/env bash
# The Galaxy tools' checks on a real Galaxy 26.1.1 (from PyPI), as ../shared/docs/galaxy-testing.md
# describes (way 2): both tools linted with planemo; then one Galaxy server, started first so that
# its start-up overlaps the rest, runs every <test> of both tools (Galaxy's own test driver, as
# planemo runs it, several at once), the form as Galaxy builds it and the train-then-predict
# workflow (galaxy/api-tests/run.py). Prints 'N passed, N failed'. Called by scripts/test.sh,
# which has built target/release/image-learner; run alone, it builds it first.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup-test.sh
[ -x target/release/image-learner ] && [ -n "${IMAGE_LEARNER_BUILT:-}" ] || cargo build --release --quiet

# Tool tests at once: each waits on Galaxy's job queue between its uploads, job and metadata
# steps, and running several keeps both cores busy (docs/testing.md).
PARALLEL="${GALAXY_TEST_PARALLEL:-4}"

work="$(mktemp -d)"
mkdir -p "$work/bin" "$work/gx"
ln -s "$PWD/target/release/image-learner" "$work/bin/image-learner"
export PATH="$work/bin:$PATH"

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
key="image-learner-test-$$"
cat > "$work/gx/tool_conf.xml" <<XML
<toolbox><section id="image" name="Images">
<tool file="$PWD/galaxy/image_learner.xml"/><tool file="$PWD/galaxy/image_learner_predict.xml"/>
</section></toolbox>
XML
cat > "$work/gx/galaxy.yml" <<YML
galaxy:
  data_dir: $work/gx/data
  tool_config_file: $work/gx/tool_conf.xml
  bootstrap_admin_api_key: $key
  admin_users: admin@example.org
  conda_auto_init: false
  conda_auto_install: false
  enable_celery_tasks: false
  allow_path_paste: true
  enable_mulled_containers: false
  check_migrate_databases: true
YML
env PATH="$work/bin:$GALAXY_VENV/bin:$PATH" VIRTUAL_ENV="$GALAXY_VENV" GALAXY_CONFIG_FILE="$work/gx/galaxy.yml" \
  "$GALAXY_VENV/bin/gunicorn" 'galaxy.webapps.galaxy.fast_factory:factory()' -k galaxy.webapps.galaxy.workers.Worker \
  -b "127.0.0.1:$port" --workers=1 --timeout 600 --config python:galaxy.web_stack.gunicorn_config \
  --preload --no-control-socket > "$work/gx/server.log" 2>&1 &
gx_pid=$!
trap 'kill $gx_pid 2>/dev/null; wait $gx_pid 2>/dev/null; rm -rf "$work"' EXIT

"$PLANEMO_VENV/bin/planemo" lint --fail_level warn galaxy/image_learner.xml galaxy/image_learner_predict.xml >/dev/null
echo "galaxy: both tools lint clean (planemo lint --fail_level warn)"

# The predict tool's tests need Best Models, a classifier's and a regression's: made here from the
# sample (too large to commit), again only when the binary is newer.
sample_model() {  # NAME METADATA [OPTION ...]
  local name=$1 metadata=$2; shift 2
  if [ ! -f "test-data/$name" ] || [ target/release/image-learner -nt "test-data/$name" ]; then
    image-learner train --images test-data/sample_images.zip --metadata "test-data/$metadata" \
      --model resnet18 --epochs 2 --image-size 32 --device cpu --use-pretrained false "$@" \
      --output-dir "$work/$name" 2>/dev/null >/dev/null
    cp "$work/$name/best_model.zip" "test-data/$name"
  fi
}
sample_model sample_best_model.zip sample_metadata.csv
sample_model sample_best_model_regression.zip sample_metadata_regression.csv --task regression

start=$(date +%s)
for _ in $(seq 1 180); do
  curl -sf "http://127.0.0.1:$port/api/version" >/dev/null && break
  kill -0 $gx_pid 2>/dev/null || { tail -30 "$work/gx/server.log"; echo "galaxy: the server did not start"; exit 1; }
  sleep 1
done
echo "galaxy: the server answered $(( $(date +%s) - start )) s after the lint and the sample models"

start=$(date +%s)
"$PLANEMO_VENV/bin/python" galaxy/api-tests/run.py "http://127.0.0.1:$port" "$key" "$PWD" "$PARALLEL" ||
  { tail -40 "$work/gx/server.log"; echo "galaxy: checks failed after $(( $(date +%s) - start )) s"; exit 1; }
echo "galaxy: tool tests, form and workflow on Galaxy 26.1.1 in $(( $(date +%s) - start )) s ($PARALLEL at a time)"
