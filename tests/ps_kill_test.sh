#!/usr/bin/env bash
# A server dies (SIGKILL) or hangs (SIGSTOP) while workers pull and push.
# Every worker must fail with an error that names the server, within the
# request deadline, and the job must end by itself (no hang).
#
#   kill: mpirun --enable-recovery, so mpirun does not kill the survivors
#         itself and the workers must notice on their own. (Open MPI then
#         exits 0 whatever happened, so the status is not checked.)
#   stop: plain mpirun, which cannot tell a hung rank from a busy one; the
#         workers' deadline ends the job, with a non-zero status.
#
# usage: ps_kill_test.sh path/to/freshet_ps_mpi_driver kill|stop
set -u
driver=$1
mode=${2:-kill}
if [ "$mode" = kill ]; then signal=KILL; recovery=--enable-recovery; else signal=STOP; recovery=; fi
timeout_ms=2000
tmp=$(mktemp -d)
trap 'kill -9 $mpipid $(cat "$tmp"/*.pid 2>/dev/null) 2>/dev/null; rm -rf "$tmp"' EXIT

export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
# --enable-recovery: mpirun lets the survivors run, so they must notice by
# themselves (that is what this test checks).
mpirun --oversubscribe --bind-to none $recovery -np 4 "$driver" --scenario=load \
  --seconds=60 --timeout_ms=$timeout_ms --pid_dir="$tmp" >"$tmp/out" 2>&1 &
mpipid=$!

for _ in $(seq 1 300); do
  [ "$(grep -c 'serving traffic' "$tmp/out")" -ge 2 ] && break
  sleep 0.1
done
if [ "$(grep -c 'serving traffic' "$tmp/out")" -lt 2 ]; then
  echo "FAIL: workers never started"; cat "$tmp/out"; exit 1
fi
victim=$(cat "$tmp/rank0.pid")
echo "sending SIG$signal to server 0 (rank 0, pid $victim)"
kill -s $signal "$victim"
start=$(date +%s.%N)

# The job must end on its own well before the driver's 60 s of load.
for _ in $(seq 1 200); do
  kill -0 $mpipid 2>/dev/null || break
  sleep 0.1
done
if kill -0 $mpipid 2>/dev/null; then
  echo "FAIL: job still running 20 s after the server died (hung)"; cat "$tmp/out"; exit 1
fi
wait $mpipid
rc=$?
elapsed=$(echo "$(date +%s.%N) - $start" | bc)
cat "$tmp/out"
echo "job exited with status $rc, ${elapsed}s after the kill"

fail=0
if [ "$mode" = stop ] && [ "$rc" -eq 0 ]; then
  echo "FAIL: job exited 0 after losing a server"; fail=1
fi
# Every worker (each printed "worker <i>: serving traffic") must name the
# dead server; one worker naming it while another hangs or fails otherwise
# is a failure.
workers=$(grep -oE '^worker [0-9]+: serving traffic' "$tmp/out" | awk '{print $2}' | tr -d : | sort -u)
named=$(grep -oE '^worker [0-9]+: request failed after .*DEADLINE_EXCEEDED.*server 0 \(rank 0\)' "$tmp/out" |
  awk '{print $2}' | tr -d : | sort -u)
n_workers=$(echo "$workers" | grep -c .)
n_named=$(echo "$named" | grep -c .)
echo "workers: $n_workers; naming server 0 (rank 0): $n_named"
[ "$n_workers" -ge 2 ] || { echo "FAIL: expected 2 workers, saw $n_workers"; fail=1; }
for w in $workers; do
  grep -qx "$w" <<< "$named" || { echo "FAIL: worker $w did not report server 0 (rank 0) by name"; fail=1; }
done
# Each report says how long the request waited: within 1.5x the deadline.
grep -o 'request failed after [0-9.]* s' "$tmp/out" | awk -v lim=$timeout_ms '
  { secs = $4; if (secs * 1000 > lim * 1.5) { print "FAIL: waited " secs " s"; bad = 1 } }
  END { exit bad }' || fail=1
[ $fail -eq 0 ] && echo "PASS: all $n_workers workers named the dead server within the deadline"
exit $fail
