#!/usr/bin/env bash
# The main job on one machine: sets up (Debian packages), builds, and trains
# on a local freshet cluster with mpirun, one rank per role in the cluster
# config (default cluster-configs/local.pbtxt: 2 servers, 2 workers, 1
# exporter). The default task, `synthetic`, generates the synthetic shop into
# out/synthetic on first use and trains DeepFM on it, printing progress and
# finally the holdout AUC beside the oracle AUC.
#
# usage: launch/local.sh [--cluster_config=FILE] [--task=NAME | --job_config=FILE]
#                        [other freshet_train flags, see build/bin/freshet_train --help]
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
exec launch/mpirun.sh -np "$np" build/bin/freshet_train --cluster_config="$config" "${args[@]}"
