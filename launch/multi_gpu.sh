#!/usr/bin/env bash
# Train on several GPUs of one machine: one process drives all visible GPUs (JAX is
# single-controller per host; the batch is split over devices by colorjax/platform/parallel.py).
#
#   launch/multi_gpu.sh all --config=configs/unetddpm.py --workdir=runs/ddpm
#   launch/multi_gpu.sh 0,2,3 --config=configs/unet.py --workdir=runs/unet --config.batch_size=96
#
# The first argument picks the GPUs (CUDA_VISIBLE_DEVICES list, or "all"); the rest go
# to colorjax.main. config.batch_size is global: it must divide by the number of GPUs.
set -euo pipefail
if [ $# -lt 1 ]; then
  echo "usage: $0 all|GPU_IDS [colorjax.main flags...]" >&2; exit 2
fi
gpus=$1; shift
if [ "$gpus" != "all" ]; then export CUDA_VISIBLE_DEVICES="$gpus"; fi
# Let XLA use most of the GPU memory but leave room for cuDNN workspaces.
export XLA_PYTHON_CLIENT_MEM_FRACTION=${XLA_PYTHON_CLIENT_MEM_FRACTION:-0.9}
exec "${PYTHON:-python}" -m colorjax.main "$@"
