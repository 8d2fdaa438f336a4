#!/usr/bin/env bash
# The main job on one machine: sets up (Debian packages), builds, and runs a
# local freshet cluster with mpirun, one rank per role in the cluster config
# (default cluster-configs/local.pbtxt: 2 servers, 2 workers, 1 exporter).
#
# usage: launch/local.sh [--cluster_config=FILE] [extra flags for the job]
set -euo pipefail
cd "$(dirname "$0")/.."
tools/bootstrap.sh
tools/build.sh

config=cluster-configs/local.pbtxt
args=()
for a in "$@"; do
  case "$a" in
    --cluster_config=*) config=${a#--cluster_config=} ;;
    *) args+=("$a") ;;
  esac
done
np=$(build/bin/freshet_ranks --cluster_config="$config")
echo "local cluster: $np ranks from $config"
exec launch/mpirun.sh -np "$np" build/bin/freshet_ps_bench --cluster_config="$config" \
  --dims=16 --keys_per_request=1024,16384 --keyspace=200000 --seconds=1 \
  --memory_rows=1000000 "${args[@]}"
