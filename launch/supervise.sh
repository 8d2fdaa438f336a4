#!/usr/bin/env bash
# Supervisor: runs a launch command and, when it fails, says what died and
# runs it again, with back-off, until it succeeds or the restarts run out.
#
# usage: launch/supervise.sh [--max_restarts=N] [--backoff_s=S] [--max_backoff_s=M]
#                            [--cluster_config=FILE] [--log=FILE] -- COMMAND [ARGS...]
#   --max_restarts=N    restarts after the first attempt (default 3): at most N+1 attempts
#   --backoff_s=S       wait S seconds before the first restart, doubling for each
#                       further one (default 5; 0: none)
#   --max_backoff_s=M   cap of that wait (default 120)
#   --cluster_config=F  names ranks by role in the reports (freshet_ranks --table);
#                       default: the command's own --cluster_config=, if any
#   --log=FILE          also append every attempt's output there (default: a temp file)
#
# The command must be restartable: for freshet_train that means
# `--checkpoint_dir=D --checkpoint_interval_steps=K --resume` (restore from
# D's newest complete checkpoint if there is one, else start fresh). Each
# attempt sees FRESHET_ATTEMPT (0, 1, ...) in its environment.
#
# What died comes from the attempt's output: mpirun's "process rank R ...
# exited on signal S", "Process name: [[job,1],R] Exit code: C", "MPI_ABORT
# was invoked on rank R", and freshet_train's "freshet_train: <role> <i>
# (rank R): <error>" lines (a dead or hung peer is named there: request and
# collective deadlines, docs/RELIABILITY.md "Recovery").
#
# Exit status: 0 when an attempt succeeds; otherwise the last attempt's
# status, after a summary of every attempt. SIGINT/SIGTERM stop the current
# attempt and the supervisor (no restart).
set -uo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
max_restarts=3
backoff=5
max_backoff=120
config=
log=
die() { echo "supervise: $*" >&2; exit 2; }
while [ $# -gt 0 ]; do
  case "$1" in
    --max_restarts=*) max_restarts=${1#*=} ;;
    --backoff_s=*) backoff=${1#*=} ;;
    --max_backoff_s=*) max_backoff=${1#*=} ;;
    --cluster_config=*) config=${1#*=} ;;
    --log=*) log=${1#*=} ;;
    --) shift; break ;;
    -h|--help) sed -n '2,/^set -uo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown option '$1' (the command goes after --)" ;;
  esac
  shift
done
[ $# -gt 0 ] || die "no command (usage: launch/supervise.sh [options] -- COMMAND ...)"
[[ "$max_restarts" =~ ^[0-9]+$ ]] || die "--max_restarts must be a whole number, got '$max_restarts'"
[[ "$backoff" =~ ^[0-9]+([.][0-9]+)?$ ]] || die "--backoff_s must be seconds, got '$backoff'"
[[ "$max_backoff" =~ ^[0-9]+([.][0-9]+)?$ ]] || die "--max_backoff_s must be seconds, got '$max_backoff'"
if [ -z "$config" ]; then
  for a in "$@"; do
    case "$a" in --cluster_config=*) config=${a#*=} ;; esac
  done
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/freshet-supervise.XXXXXX")
child=
stopping=0
cleanup() { rm -rf "$tmp"; }
trap cleanup EXIT
on_signal() {
  stopping=1
  echo "supervise: $1: stopping the current attempt, no restart" >&2
  [ -z "$child" ] || kill -TERM "$child" 2>/dev/null
}
trap 'on_signal SIGINT' INT
trap 'on_signal SIGTERM' TERM

# Rank -> "role index" from the cluster config, when freshet_ranks can say.
declare -A role_of=()
if [ -n "$config" ] && [ -x "$repo/build/bin/freshet_ranks" ]; then
  while read -r r role index _; do
    [[ "$r" =~ ^[0-9]+$ ]] && role_of[$r]="$role $index"
  done < <("$repo/build/bin/freshet_ranks" --cluster_config="$config" --table 2>/dev/null)
fi
rank_name() {  # "rank 3 (worker 1)" or "rank 3"
  if [ -n "${role_of[$1]:-}" ]; then echo "rank $1 (${role_of[$1]})"; else echo "rank $1"; fi
}

# What died, from one attempt's output ($1) and exit status ($2): one line.
what_died() {
  local out=$1 rc=$2 parts=() line r
  # mpirun: a rank killed by a signal.
  while read -r r sig; do
    parts+=("$(rank_name "$r") exited on signal $sig")
  done < <(sed -n 's/.*process rank \([0-9]*\) with PID [0-9]* on node [^ ]* exited on signal \([0-9]* ([^)]*)\).*/\1 \2/p' "$out" | sort -u)
  # mpirun: the first rank that exited non-zero.
  r=$(sed -n 's/.*Process name: \[\[[0-9]*,[0-9]*\],\([0-9]*\)\].*/\1/p' "$out" | head -1)
  if [ -n "$r" ]; then
    line=$(grep -m1 -o 'Exit code: *[0-9]*' "$out" | grep -o '[0-9]*$')
    parts+=("$(rank_name "$r") exited first with status ${line:-?}")
  fi
  # A rank that called MPI_Abort.
  while read -r r; do
    parts+=("$(rank_name "$r") called MPI_Abort")
  done < <(sed -n 's/.*MPI_ABORT was invoked on rank \([0-9]*\).*/\1/p' "$out" | sort -u)
  # freshet_train's own error lines (the first one is the cause; later
  # ones often follow from it).
  line=$(grep -m1 -E '^freshet_train: [a-z]+ [0-9]+ \(rank [0-9]+\)' "$out" | cut -c1-400)
  [ -z "$line" ] || parts+=("first error: $line")
  if [ ${#parts[@]} -eq 0 ]; then
    if [ "$rc" -gt 128 ]; then parts+=("the command died on signal $((rc - 128))")
    else parts+=("the command exited with status $rc (no rank named in its output)"); fi
  fi
  local IFS=';'
  echo "${parts[*]}" | sed 's/;/; /g'
}

attempts=$((max_restarts + 1))
summary=()
rc=1
for ((attempt = 0; attempt < attempts; attempt++)); do
  out=$tmp/attempt-$attempt.log
  start=$(date +%s.%N)
  echo "supervise: attempt $((attempt + 1))/$attempts: $*"
  # Output to the terminal (or our stdout) and to the attempt's log.
  FRESHET_ATTEMPT=$attempt "$@" > >(tee "$out") 2>&1 &
  child=$!
  wait "$child"
  rc=$?
  # `wait` returns early (> 128) when a trapped signal arrives: wait again.
  while kill -0 "$child" 2>/dev/null; do wait "$child"; rc=$?; done
  child=
  sleep 0.1  # tee finishes writing the log
  [ -z "$log" ] || cat "$out" >> "$log"
  secs=$(echo "$(date +%s.%N) - $start" | bc)
  secs=$(printf '%.1f' "$secs")
  if [ "$rc" -eq 0 ]; then
    summary+=("$((attempt + 1))|0|$secs|succeeded")
    break
  fi
  died=$(what_died "$out" "$rc")
  summary+=("$((attempt + 1))|$rc|$secs|$died")
  echo "supervise: attempt $((attempt + 1))/$attempts failed (exit $rc after $secs s): $died" >&2
  [ "$stopping" = 0 ] || break
  if [ $((attempt + 1)) -lt $attempts ]; then
    wait_s=$(echo "b = $backoff * 2 ^ $attempt; if (b > $max_backoff) b = $max_backoff; b" | bc -l)
    wait_s=$(printf '%.1f' "$wait_s")
    echo "supervise: restarting in $wait_s s (restart $((attempt + 1)) of $max_restarts)" >&2
    sleep "$wait_s" &
    wait $! || true
    [ "$stopping" = 0 ] || break
  fi
done

restarts=$(( ${#summary[@]} - 1 ))
if [ "$rc" -eq 0 ]; then
  echo "supervise: succeeded after $restarts restart(s)"
else
  echo "supervise: FAILED: $((restarts + 1)) attempt(s), none succeeded" >&2
fi
if [ "$restarts" -gt 0 ] || [ "$rc" -ne 0 ]; then
  for s in "${summary[@]}"; do
    IFS='|' read -r n code secs what <<< "$s"
    echo "  attempt $n: exit $code after $secs s: $what" >&2
  done
fi
echo "supervise: {\"attempts\":${#summary[@]},\"restarts\":$restarts,\"exit\":$rc}"
exit "$rc"
