#!/usr/bin/env bash
# freshet_train across machines with mpirun: the cluster config's node groups
# decide which role runs on which host. freshet_ranks turns the config and a
# host list into an Open MPI rankfile (node i of the config -> i-th host;
# nodes are numbered by node group, in config order), and mpirun starts every
# rank where the rankfile puts it (over ssh, or inside a SLURM allocation).
#
# usage: launch/mpirun_hosts.sh --cluster_config=FILE
#            [--hosts=LIST | --hostfile=FILE]   default: $SLURM_JOB_NODELIST
#            [--cpus_per_node=N]   cores per host for rankfile slots (default: config's)
#            [--bin_dir=DIR]       freshet binaries (default: <repo>/build/bin)
#            [--rankfile_out=F]    keep the rankfile there (default: a temp file)
#            [--dry-run]           print the rankfile and the mpirun command only
#            [freshet_train flags...]
# LIST: hosts in SLURM's compressed syntax, e.g. "cpu1,cpu2,gpu[01-02]".
# FILE (--hostfile): one host a line; the first word counts ("a slots=4"),
# '#' starts a comment. Example:
#   launch/mpirun_hosts.sh --cluster_config=cluster-configs/slurm-4node.pbtxt \
#       --hosts='cpu[1-2],gpu[1-2]' --task=synthetic
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
config=$repo/cluster-configs/local.pbtxt
hosts=${SLURM_JOB_NODELIST:-}
cpus=0
bin_dir=$repo/build/bin
rankfile=
dry_run=0
args=()
for a in "$@"; do
  case "$a" in
    --cluster_config=*) config=${a#*=} ;;
    --hosts=*) hosts=${a#*=} ;;
    --hostfile=*)
      f=${a#*=}
      [ -r "$f" ] || { echo "mpirun_hosts.sh: cannot read hostfile $f" >&2; exit 2; }
      hosts=$(sed -e 's/#.*//' "$f" | awk 'NF { print $1 }' | paste -sd, -) ;;
    --cpus_per_node=*) cpus=${a#*=} ;;
    --bin_dir=*) bin_dir=${a#*=} ;;
    --rankfile_out=*) rankfile=${a#*=} ;;
    --dry-run|--dry_run) dry_run=1 ;;
    *) args+=("$a") ;;
  esac
done
if [ -z "$hosts" ]; then
  echo "mpirun_hosts.sh: no hosts: give --hosts=LIST or --hostfile=FILE (or run inside SLURM)" >&2
  exit 2
fi
ranks=$bin_dir/freshet_ranks
np=$("$ranks" --cluster_config="$config")
if [ -z "$rankfile" ]; then
  rankfile=$(mktemp "${TMPDIR:-/tmp}/freshet-rankfile.XXXXXX")
  [ "$dry_run" = 1 ] || trap 'rm -f "$rankfile"' EXIT
fi
"$ranks" --cluster_config="$config" --rankfile --hosts="$hosts" --cpus_per_node="$cpus" > "$rankfile"
"$ranks" --cluster_config="$config" --table
cmd=(mpirun --oversubscribe --bind-to none -np "$np" --rankfile "$rankfile"
     "$bin_dir/freshet_train" --cluster_config="$config" "${args[@]}")
if [ "$dry_run" = 1 ]; then
  echo "# rankfile $rankfile:"
  cat "$rankfile"
  printf '%q ' "${cmd[@]}"; echo
  exit 0
fi
if [ "$(id -u)" -eq 0 ]; then
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
fi
echo "freshet: $np ranks on hosts $hosts (rankfile $rankfile)"
# Not exec: the trap removes the temp rankfile when mpirun ends.
"${cmd[@]}"
