"""Devices and shardings: the one mesh helper of colorjax.

Data parallelism over every device of every process: the global batch is split along the
mesh axis 'data'; parameters and optimizer state are replicated. `jax.jit` with these
shardings inserts the cross-device reductions (gradient means, BatchNorm statistics), so
per-device code never appears in the training step.
"""

from __future__ import annotations

import os

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from colorjax.config.checks import ConfigError

DATA_AXIS = "data"


def initialize_distributed() -> None:
    """Join a multi-process run when the environment describes one; no-op otherwise.

    Either JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES and JAX_PROCESS_ID are set (the
    scripts in `launch/` do), or SLURM (or Open MPI) describes the job and
    `jax.distributed.initialize()` reads it. CPU processes exchange data through gloo.
    """
    if jax.distributed.is_initialized():
        return
    env = os.environ
    launcher = _launcher()
    if launcher is None:
        return
    # Only affects the CPU backend: lets CPU processes (tests, launch/local_cpu.sh) all-reduce.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    if launcher == "explicit":
        explicit = env["JAX_COORDINATOR_ADDRESS"]
        missing = [k for k in ("JAX_NUM_PROCESSES", "JAX_PROCESS_ID") if k not in env]
        if missing:
            raise ValueError(f"JAX_COORDINATOR_ADDRESS is set but {missing} are not")
        jax.distributed.initialize(coordinator_address=explicit,
                                   num_processes=int(env["JAX_NUM_PROCESSES"]),
                                   process_id=int(env["JAX_PROCESS_ID"]))
    else:
        jax.distributed.initialize()


def _launcher() -> str | None:
    """Which environment describes a multi-process run: 'explicit' (JAX_COORDINATOR_ADDRESS,
    as launch/local_cpu.sh sets), 'slurm' or 'ompi'; None for a single process."""
    env = os.environ
    if env.get("JAX_COORDINATOR_ADDRESS"):
        return "explicit"
    if int(env.get("SLURM_NTASKS", "1")) > 1:
        return "slurm"
    if int(env.get("OMPI_COMM_WORLD_SIZE", "1")) > 1:
        return "ompi"
    return None


# Where each launcher puts this process's id.
_PROCESS_ID_VARIABLE = {"explicit": "JAX_PROCESS_ID", "slurm": "SLURM_PROCID",
                        "ompi": "OMPI_COMM_WORLD_RANK"}


def launched_process_id() -> int:
    """This process's id in a multi-process launch, from the environment alone (without
    joining the others); 0 for a single process."""
    launcher = _launcher()
    return int(os.environ.get(_PROCESS_ID_VARIABLE[launcher], "0")) if launcher else 0


def create_mesh(devices=None) -> Mesh:
    """A 1-D mesh over all devices of all processes."""
    devices = jax.devices() if devices is None else devices
    return Mesh(np.asarray(devices), (DATA_AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def data_sharded(mesh: Mesh) -> NamedSharding:
    """Leading (batch) axis split over the 'data' axis."""
    return NamedSharding(mesh, P(DATA_AXIS))


def shard_batch(local_batch, mesh: Mesh):
    """Per-process numpy batch -> global jax.Array sharded over 'data'.

    Each process passes its own rows; the global batch is their concatenation in process
    order, which is what `jax.make_array_from_process_local_data` assembles.
    """
    sharding = data_sharded(mesh)
    return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, x),
                        local_batch)


def check_batch_divisible(global_batch, field: str = "config.batch_size", *,
                          devices: bool = True) -> None:
    """The global batch: a positive integer that splits evenly over the processes (each
    reads its own share) and, with `devices`, over every device (the sharded step)."""
    n_dev, n_proc = jax.device_count(), jax.process_count()
    if isinstance(global_batch, bool) or not isinstance(global_batch, int) or global_batch < 1:
        raise ConfigError(field, f"{global_batch!r} is not a positive integer",
                          f"multiples of {n_dev if devices else n_proc}")
    if (devices and global_batch % n_dev) or global_batch % n_proc:
        raise ConfigError(
            field, f"{global_batch} must be divisible by the number of "
            + (f"devices ({n_dev}) and processes ({n_proc})" if devices
               else f"processes ({n_proc}, jax.process_count())"),
            f"multiples of {n_dev if devices else n_proc}.")


def process_batch(global_batch, field: str = "config.batch_size") -> int:
    """This process's share of the global batch (`check_batch_divisible`'s process rule)."""
    check_batch_divisible(global_batch, field, devices=False)
    return global_batch // jax.process_count()


def barrier(name: str) -> None:
    """Wait until every process has reached this point (a no-op with one process)."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils
        multihost_utils.sync_global_devices(name)


def to_host(tree):
    """Fetch a (possibly sharded, possibly multi-process) pytree to host numpy.

    Fully-replicated arrays are read locally; sharded ones are gathered from all processes.
    """
    def fetch(x):
        if isinstance(x, jax.Array) and not x.is_fully_replicated:
            from jax.experimental import multihost_utils
            return np.asarray(multihost_utils.process_allgather(x, tiled=True))
        return np.asarray(x)
    return jax.tree.map(fetch, tree)
