#!/usr/bin/env bash
# Runs the Galaxy tools' tests on a real Galaxy 26.1.1 (from PyPI), as ../shared/docs/galaxy-testing.md
# describes: planemo drives a Galaxy started from a two-file stand-in for a checkout. Prints
# 'N passed, N failed'. Also lints both tools. Called by scripts/test.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup-test.sh
cargo build --release --quiet

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/bin"
ln -s "$PWD/target/release/image-learner" "$work/bin/image-learner"
export PATH="$work/bin:$PATH"

# The predict tool's tests need Best Models, a classifier's and a regression's: made here from the
# sample (too large to commit), again whenever the binary is newer.
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

"$PLANEMO_VENV/bin/planemo" lint --fail_level warn galaxy/image_learner.xml galaxy/image_learner_predict.xml >/dev/null
echo "galaxy: both tools lint clean (planemo lint --fail_level warn)"

shim="$work/galaxy-root"
mkdir -p "$shim/lib/galaxy"
printf 'VERSION_MAJOR = "26.1"\nVERSION_MINOR = "1"\nVERSION = VERSION_MAJOR + "." + VERSION_MINOR\n' > "$shim/lib/galaxy/version.py"
cat > "$shim/run.sh" <<RUN
#!/bin/bash
BIND=\$("$GALAXY_VENV/bin/python" -c 'import json,os; print(json.load(open(os.environ["GALAXY_CONFIG_FILE"]))["gravity"]["gunicorn"]["bind"])')
export GALAXY_CONFIG_OVERRIDE_ENABLE_CELERY_TASKS=false
export PATH="$work/bin:$GALAXY_VENV/bin:\$PATH" VIRTUAL_ENV="$GALAXY_VENV"
exec "$GALAXY_VENV/bin/gunicorn" 'galaxy.webapps.galaxy.fast_factory:factory()' \
  -k galaxy.webapps.galaxy.workers.Worker -b "\$BIND" --workers=1 --timeout 600 \
  --config python:galaxy.web_stack.gunicorn_config --no-control-socket
RUN
chmod +x "$shim/run.sh"

start=$(date +%s)
set +e
if [ -z "${GALAXY_TEST_API_ONLY:-}" ]; then  # set it to run only the API tests below, when developing them
GX_VENV="$GALAXY_VENV" "$PLANEMO_VENV/bin/planemo" test --galaxy_root "$shim" --skip_venv --no_conda_auto_init \
  --test_output_json "$work/galaxy-tests.json" galaxy/image_learner.xml galaxy/image_learner_predict.xml \
  > "$work/planemo.log" 2>&1
rc=$?
python3 - "$work/galaxy-tests.json" "$(( $(date +%s) - start ))" <<'PY'
import json, sys
try:
    tests = json.load(open(sys.argv[1]))["tests"]
except Exception as e:
    print(f"galaxy: no test results ({e})"); tests = []
passed = [t for t in tests if t["data"]["status"] == "success"]
failed = [t for t in tests if t["data"]["status"] != "success"]
for t in failed:
    d = t["data"]
    print(f"FAILED {t['id']}: {d.get('problem_log') or d.get('job', {}).get('stderr', '')[:2000]}")
print(f"galaxy: {len(tests)} tool tests on Galaxy 26.1.1 in {sys.argv[2]} s")
print(f"{len(passed)} passed, {len(failed)} failed")
sys.exit(1 if failed or not tests else 0)
PY
status=$?
if [ $rc -ne 0 ] || [ $status -ne 0 ]; then tail -50 "$work/planemo.log"; exit 1; fi
fi
set -e

# A Galaxy of our own for what planemo does not test: the form as Galaxy builds it, and the
# train-then-predict workflow on uploaded data (galaxy/api-tests/run.py).
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
key="image-learner-test-$$"
mkdir -p "$work/gx"
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
for _ in $(seq 1 120); do
  curl -sf "http://127.0.0.1:$port/api/version" >/dev/null && break
  kill -0 $gx_pid 2>/dev/null || { tail -30 "$work/gx/server.log"; echo "galaxy: the server did not start"; exit 1; }
  sleep 2
done
"$GALAXY_VENV/bin/python" galaxy/api-tests/run.py "http://127.0.0.1:$port" "$key" "$PWD" || { tail -30 "$work/gx/server.log"; exit 1; }
