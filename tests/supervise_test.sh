#!/usr/bin/env bash
# launch/supervise.sh on stand-in jobs (real mpirun, bash ranks):
#   - a job whose rank 1 is SIGKILLed in its first two attempts succeeds on
#     the third: exit 0, 3 attempts, each failure names "rank 1 ... signal
#     9", the back-off doubles (0.2 s then 0.4 s);
#   - a job that always fails (rank 2 exits 3) stops after --max_restarts:
#     exit 3, a summary of both attempts naming rank 2;
#   - freshet_train's own error line is quoted as the first error;
#   - SIGTERM to the supervisor ends the attempt and the supervisor, with no
#     restart;
#   - bad usage exits 2.
# usage: tests/supervise_test.sh SOURCE_DIR
set -uo pipefail
src=$(cd "$1" && pwd)
sup=$src/launch/supervise.sh
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
failures=0
check() {  # check DESCRIPTION COMMAND...
  if "${@:2}"; then echo "ok: $1"; else echo "FAIL: $1"; failures=$((failures + 1)); fi
}

# 1. Killed twice, then succeeds.
cat > "$tmp/flaky.sh" <<'SCRIPT'
#!/usr/bin/env bash
echo "attempt $FRESHET_ATTEMPT"
[ "$FRESHET_ATTEMPT" -ge 2 ] && { echo done; exit 0; }
exec mpirun --oversubscribe --bind-to none -np 3 bash -c \
  'if [ "$OMPI_COMM_WORLD_RANK" = 1 ]; then sleep 0.3; kill -9 $$; fi; sleep 20'
SCRIPT
chmod +x "$tmp/flaky.sh"
t0=$(date +%s.%N)
"$sup" --max_restarts=3 --backoff_s=0.2 -- "$tmp/flaky.sh" > "$tmp/1.log" 2>&1
rc=$?
secs=$(echo "$(date +%s.%N) - $t0" | bc)
check "flaky job: exit 0" [ "$rc" = 0 ]
check "flaky job: 3 attempts, 2 restarts" grep -q '"attempts":3,"restarts":2,"exit":0' "$tmp/1.log"
check "flaky job: each failure names rank 1 and the signal" \
  [ "$(grep -c 'failed (exit 137 after .*rank 1 exited on signal 9 (Killed)' "$tmp/1.log")" = 2 ]
check "flaky job: back-off 0.2 s then 0.4 s" \
  grep -q 'restarting in 0.4 s (restart 2 of 3)' "$tmp/1.log"
check "flaky job: took at least the back-off (0.6 s)" [ "$(echo "$secs >= 0.6" | bc)" = 1 ]
check "flaky job: the attempt's own output passes through" grep -q '^done$' "$tmp/1.log"

# 2. Always fails: gives up after the restarts, with the attempt's status.
cat > "$tmp/broken.sh" <<'SCRIPT'
#!/usr/bin/env bash
exec mpirun --oversubscribe --bind-to none -np 3 bash -c \
  'if [ "$OMPI_COMM_WORLD_RANK" = 2 ]; then exit 3; fi; sleep 20'
SCRIPT
chmod +x "$tmp/broken.sh"
"$sup" --max_restarts=1 --backoff_s=0 -- "$tmp/broken.sh" > "$tmp/2.log" 2>&1
rc=$?
check "broken job: exit 3 (the last attempt's)" [ "$rc" = 3 ]
check "broken job: FAILED after 2 attempts" grep -q 'FAILED: 2 attempt(s), none succeeded' "$tmp/2.log"
# mpirun does not always print which process exited first (seen once in 2
# attempts under load: only "1 process returned a non-zero exit code"), and
# the supervisor can only name what mpirun printed. So: every attempt names
# rank 2 or says plainly that no rank was named, never another rank, and at
# least one attempt names rank 2.
named=$(grep -c '^  attempt [12]: exit 3 .*rank 2 exited first with status 3' "$tmp/2.log")
unnamed=$(grep -c '^  attempt [12]: exit 3 .*(no rank named in its output)' "$tmp/2.log")
check "broken job: summary names rank 2 (or no rank) in both attempts" \
  [ "$named" -ge 1 ] && [ $((named + unnamed)) = 2 ]

# 3. freshet_train's error line is the first error.
cat > "$tmp/err.sh" <<'SCRIPT'
#!/usr/bin/env bash
echo "freshet_train: worker 1 (rank 3): UNAVAILABLE: all-reduce #9 ... dead or hung"
exit 1
SCRIPT
chmod +x "$tmp/err.sh"
"$sup" --max_restarts=0 -- "$tmp/err.sh" > "$tmp/3.log" 2>&1
check "error line: exit 1" [ $? = 1 ]
check "error line: quoted as the first error" \
  grep -q 'first error: freshet_train: worker 1 (rank 3): UNAVAILABLE' "$tmp/3.log"

# 4. SIGTERM: no restart.
"$sup" --max_restarts=5 --backoff_s=0 -- bash -c 'sleep 30' > "$tmp/4.log" 2>&1 &
pid=$!
sleep 1
t0=$(date +%s.%N)
kill -TERM "$pid"
wait "$pid"
rc=$?
secs=$(echo "$(date +%s.%N) - $t0" | bc)
check "SIGTERM: non-zero exit" [ "$rc" != 0 ]
check "SIGTERM: ends within 5 s" [ "$(echo "$secs < 5" | bc)" = 1 ]
check "SIGTERM: one attempt, no restart" grep -q '"attempts":1,' "$tmp/4.log"

# 5. Usage.
"$sup" --max_restarts=2 > "$tmp/5.log" 2>&1
check "no command: exit 2" [ $? = 2 ]
"$sup" --max_restarts=x -- true > "$tmp/6.log" 2>&1
check "bad --max_restarts: exit 2, named" grep -q -- "--max_restarts must be a whole number" "$tmp/6.log"

if [ "$failures" -gt 0 ]; then
  for f in "$tmp"/*.log; do echo "== $f"; cat "$f"; done
  exit 1
fi
echo "PASS: supervise.sh"
