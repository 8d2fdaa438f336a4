#!/usr/bin/env bash
# The main job on one machine: sets up (Debian packages), builds, and trains
# on a local freshet cluster with mpirun, one rank per role in the cluster
# config (default cluster-configs/local.pbtxt: 2 servers, 2 workers, 1
# exporter). The default task, `synthetic`, generates the synthetic shop into
# out/synthetic on first use and trains DeepFM on it, printing progress and
# finally the holdout AUC beside the oracle AUC. Meanwhile the exporter
# publishes the model every second and freshet_serve (started here) follows
# it; at the end the script shows the served model and a few scores. Every
# rank serves its counters on http://127.0.0.1:<9400 + rank>/metrics (the
# cluster config's metrics.port) and logs them to <work_dir>/metrics; at the
# end tools/plot turns the logs into PNG dashboards in <work_dir>/plots.
#
# usage: launch/local.sh [--cluster_config=FILE] [--task=NAME | --job_config=FILE]
#                        [--no_serve] [other freshet_train flags, see
#                        build/bin/freshet_train --help]
set -euo pipefail
cd "$(dirname "$0")/.."
tools/bootstrap.sh
# Only what the job runs (tools/test.sh builds everything).
FRESHET_BUILD_TARGETS="freshet_train freshet_serve freshet_ranks freshet_gen freshet_eval" \
  tools/build.sh

config=cluster-configs/local.pbtxt
task=synthetic
work_dir=""
serve=1
args=()
for a in "$@"; do
  case "$a" in
    --cluster_config=*) config=${a#--cluster_config=} ;;
    --no_serve) serve=0 ;;
    --task=*) task=${a#--task=}; args+=("$a") ;;
    --work_dir=*) work_dir=${a#--work_dir=}; args+=("$a") ;;
    *) args+=("$a") ;;
  esac
done
work_dir=${work_dir:-out/$task}
np=$(build/bin/freshet_ranks --cluster_config="$config")
echo "local cluster: $np ranks from $config"

serve_pid=""
if [ "$serve" = 1 ] && [ "$(build/bin/freshet_ranks --cluster_config="$config" --table |
                            grep -c exporter)" -gt 0 ]; then
  mkdir -p "$work_dir"
  build/bin/freshet_serve --export_dir="$work_dir/export" --port=0 >"$work_dir/serve.log" 2>&1 &
  serve_pid=$!
  trap 'kill $serve_pid 2>/dev/null || true' EXIT
fi

mkdir -p "$work_dir"
rm -f "$work_dir"/metrics/metrics-rank*.jsonl  # this run's logs only
launch/mpirun.sh -np "$np" build/bin/freshet_train --cluster_config="$config" \
  --metrics_dir="$work_dir/metrics" "${args[@]}"
echo
tools/plot "$work_dir/metrics" -o "$work_dir/plots" || echo "local.sh: plotting failed (see above)"

if [ -n "$serve_pid" ]; then
  port=$(grep -oE 'listening on http://[0-9.]+:[0-9]+' "$work_dir/serve.log" | grep -oE '[0-9]+$')
  sleep 0.5  # the final snapshot was published before training returned
  echo
  echo "freshet_serve (http://127.0.0.1:$port, following $work_dir/export):"
  echo "  loads: $(grep -c 'serving model version' "$work_dir/serve.log") model versions while training"
  echo "  GET /model: $(curl -s "http://127.0.0.1:$port/model" | cut -c1-400)"
  if [ -f "$work_dir/holdout.examples" ]; then
    echo "  POST /score (3 holdout examples): $(tools/examples_to_json.sh "$work_dir/holdout.examples" 3 |
      curl -s -X POST --data-binary @- "http://127.0.0.1:$port/score")"
  fi
fi
