# Helpers shared by tests/fault_injection_test.sh and tests/rank_death_test.sh
# (sourced). They find and signal the ranks of one job only: the job's ranks
# carry FRESHET_FAULT_TAG=<tag> in their environment (mpirun -x), so other
# freshet jobs on the machine are never touched.

# pid of rank $2 of the job tagged $1 (a freshet_train process), or nothing.
# One grep over every environ (NUL-separated lines): fast enough to kill at
# the time asked, also on a loaded machine.
fault_rank_pid() {
  local tag=$1 rank=$2 f p
  for f in $(grep -lxzs "FRESHET_FAULT_TAG=$tag" /proc/[0-9]*/environ); do
    p=${f#/proc/}; p=${p%/environ}
    grep -qxzs "OMPI_COMM_WORLD_RANK=$rank" "$f" || continue
    [ "$(cat "/proc/$p/comm" 2>/dev/null)" = freshet_train ] || continue
    echo "$p"
    return 0
  done
  return 1
}

# Kills every freshet_train process of the job tagged $1 (cleanup).
fault_kill_job() {
  local tag=$1 f p
  for f in $(grep -lxzs "FRESHET_FAULT_TAG=$tag" /proc/[0-9]*/environ); do
    p=${f#/proc/}; p=${p%/environ}
    [ "$(cat "/proc/$p/comm" 2>/dev/null)" = freshet_train ] && kill -9 "$p" 2>/dev/null
  done
  return 0
}

# A JSON number field $2 of the last line of $1 that has it.
fault_json_field() {
  grep -oE "\"$2\": ?[-0-9.e+]+" "$1" | tail -1 | cut -d: -f2 | tr -d ' '
}

# A copy of cluster-configs/local.pbtxt ($1: source dir) into $2 with the
# request deadline set to $3 ms and no metrics endpoints (other jobs on the
# machine may use the ports).
fault_cluster_config() {
  sed -e "s/request_timeout_ms: *[0-9]*/request_timeout_ms: $3/" \
      -e 's/^\( *port:\) *[0-9]*/\1 0/' "$1/cluster-configs/local.pbtxt" > "$2"
}
