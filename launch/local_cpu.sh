#!/usr/bin/env bash
# Start N processes of one command on this machine, joined by jax.distributed over
# 127.0.0.1 (CPU collectives through gloo). For testing multi-process code without a cluster.
#
#   launch/local_cpu.sh 2 python -m colorjax.main --config=configs/unet.py:cpu --workdir=runs/mp
#
# Each process gets JAX_COORDINATOR_ADDRESS / JAX_NUM_PROCESSES / JAX_PROCESS_ID, and
# DEVICES_PER_PROCESS host CPU devices (default 1). Output lines are prefixed [pN].
#
# The processes live and die together:
# - when one exits with an error, the others get SIGTERM, then SIGKILL after
#   KILL_AFTER seconds (default 5: a process waiting in a collective for a dead peer never
#   returns to Python), and the script exits with the first failure's status;
# - SIGTERM or SIGINT to the script is passed on as SIGTERM (colorjax saves a checkpoint
#   and stops), then SIGKILL after STOP_GRACE seconds (default 60); exit status 143/130;
# - if the script itself is killed (SIGKILL), each process gets SIGKILL from the kernel
#   (setpriv --pdeathsig, from util-linux, where it is installed).
set -uo pipefail
if [ $# -lt 2 ] || ! [[ $1 =~ ^[1-9][0-9]*$ ]]; then
  echo "usage: $0 NUM_PROCESSES COMMAND [ARGS...]   (NUM_PROCESSES a positive integer)" >&2
  exit 2
fi
n=$1; shift
kill_after=${KILL_AFTER:-5}
stop_grace=${STOP_GRACE:-60}
port=${COORDINATOR_PORT:-$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
export JAX_COORDINATOR_ADDRESS="127.0.0.1:${port}" JAX_NUM_PROCESSES="$n" JAX_PLATFORMS=cpu
# Keep the caller's other XLA flags; replace only the host device count.
xla_flags=$(sed -E 's/--xla_force_host_platform_device_count=[^ ]*//g' <<< "${XLA_FLAGS:-}")
export XLA_FLAGS="${xla_flags} --xla_force_host_platform_device_count=${DEVICES_PER_PROCESS:-1}"

guard=()
if command -v setpriv >/dev/null 2>&1 && setpriv --pdeathsig KILL true 2>/dev/null; then
  guard=(setpriv --pdeathsig KILL)
fi

pids=()
for ((i = 0; i < n; i++)); do
  JAX_PROCESS_ID=$i "${guard[@]}" "$@" > >(sed -u "s/^/[p$i] /") 2> >(sed -u "s/^/[p$i] /" >&2) &
  pids+=($!)
done

alive() {  # the pids that are still running
  local p out=()
  for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && out+=("$p"); done
  echo "${out[@]}"
}

stop_all() {  # SIGTERM the survivors, SIGKILL what is left after $1 seconds
  local grace=$1 left t
  left=$(alive)
  [ -z "$left" ] && return
  kill -TERM $left 2>/dev/null
  for ((t = 0; t < grace * 10; t++)); do
    left=$(alive)
    [ -z "$left" ] && return
    sleep 0.1
  done
  echo "[launch] processes still running after ${grace} s: SIGKILL" >&2
  kill -KILL $left 2>/dev/null
}

on_signal() {
  trap '' INT TERM
  echo "[launch] received $1: stopping all processes" >&2
  stop_all "$stop_grace"
  wait 2>/dev/null
  exit "$2"
}
trap 'on_signal SIGTERM 143' TERM
trap 'on_signal SIGINT 130' INT

status=0
running=("${pids[@]}")
while ((${#running[@]} > 0)); do
  done_pid=""
  wait -n -p done_pid "${running[@]}"
  rc=$?
  # Unset when there was nothing left to wait for: the others were reaped while they were
  # being stopped (processes that fail together), their statuses after the first failure's.
  [ -z "${done_pid:-}" ] && break
  left=()
  for p in "${running[@]}"; do [ "$p" != "$done_pid" ] && left+=("$p"); done
  running=("${left[@]}")
  if ((rc != 0 && status == 0)); then
    status=$rc
    for ((i = 0; i < n; i++)); do [ "${pids[i]}" = "$done_pid" ] && failed=$i; done
    echo "[launch] process ${failed} exited with status ${rc}: stopping the others" >&2
    stop_all "$kill_after"
  fi
done
wait 2>/dev/null  # the output prefixers
exit $status
