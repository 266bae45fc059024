#!/usr/bin/env bash
# Start N processes of one command on this machine, joined by jax.distributed over
# 127.0.0.1 (CPU collectives through gloo). For testing multi-process code without a cluster.
#
#   launch/local_cpu.sh 2 python -m colorjax.main --config=configs/unet.py:cpu --workdir=runs/mp
#
# Each process gets JAX_COORDINATOR_ADDRESS / JAX_NUM_PROCESSES / JAX_PROCESS_ID, and
# DEVICES_PER_PROCESS host CPU devices (default 1). Output lines are prefixed [pN].
# If one process fails, the others are stopped and the script exits with its status.
set -euo pipefail
if [ $# -lt 2 ]; then
  echo "usage: $0 NUM_PROCESSES COMMAND [ARGS...]" >&2; exit 2
fi
n=$1; shift
port=${COORDINATOR_PORT:-$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
export JAX_COORDINATOR_ADDRESS="127.0.0.1:${port}" JAX_NUM_PROCESSES="$n" JAX_PLATFORMS=cpu
export XLA_FLAGS="--xla_force_host_platform_device_count=${DEVICES_PER_PROCESS:-1}"
pids=()
for ((i = 0; i < n; i++)); do
  JAX_PROCESS_ID=$i "$@" > >(sed -u "s/^/[p$i] /") 2> >(sed -u "s/^/[p$i] /" >&2) &
  pids+=($!)
done
trap 'kill "${pids[@]}" 2>/dev/null || true' INT TERM
status=0
for pid in "${pids[@]}"; do
  if ! wait "$pid"; then status=$?; kill "${pids[@]}" 2>/dev/null || true; fi
done
exit $status
