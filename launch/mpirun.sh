#!/usr/bin/env bash
# mpirun with the flags freshet needs on one machine or a hostfile:
#   --oversubscribe  more ranks than cores is normal for a local cluster
#   --bind-to none   ranks share cores; binding would pile them onto one
# and, when running as root (containers, CI), Open MPI's root opt-in.
# usage: launch/mpirun.sh -np N [--hostfile F] program [args...]
set -euo pipefail
if [ "$(id -u)" -eq 0 ]; then
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
fi
# Ranks always see a pty from mpirun, so tell them whether a person watches:
# worker 0 then draws a live status line instead of plain lines.
if [ -z "${FRESHET_LIVE_STATUS:-}" ]; then
  if [ -t 1 ]; then FRESHET_LIVE_STATUS=1; else FRESHET_LIVE_STATUS=0; fi
fi
export FRESHET_LIVE_STATUS
exec mpirun --oversubscribe --bind-to none -x FRESHET_LIVE_STATUS "$@"
