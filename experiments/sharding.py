"""Seeds sharded over devices with JAX's SPMD machinery (a 1-D ``Mesh`` and ``NamedSharding``),
on one process or on several (``jax.distributed``: one process per host, or per GPU).

The trainer's functions are ``vmap``s over seeds; placing their seed-leading inputs on a mesh
axis makes ``jit`` partition that vmap across devices, and since seeds never interact no
collective is needed. With one device this is a no-op. Over several processes the mesh spans
every process's devices; each process runs the same program on its own seeds, and only the
gathering of per-seed metrics (:func:`to_host`) and the stop decision (:func:`agreed_signal`)
communicate.
"""
from __future__ import annotations

from typing import Optional

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

AXIS = "seeds"


def is_primary() -> bool:
  """True in the process that writes reports and shared caches: process 0 of a ``jax.distributed``
  run, or the only one."""
  return not jax.distributed.is_initialized() or jax.process_index() == 0


def sync_processes(name: str) -> None:
  """A barrier across the processes of a ``jax.distributed`` run; nothing in a single process."""
  if jax.distributed.is_initialized() and jax.process_count() > 1:
    from jax.experimental import multihost_utils
    multihost_utils.sync_global_devices(name)


def initialize_distributed(coordinator_address: Optional[str] = None, num_processes: Optional[int] = None,
                           process_id: Optional[int] = None) -> None:
  """``jax.distributed.initialize`` once, before any computation; a second call does nothing.

  With no arguments JAX finds them in the cluster's environment (SLURM, Open MPI, Kubernetes, Cloud
  TPU; ``JAX_COORDINATOR_ADDRESS`` for the address). On the CPU the processes exchange data with
  gloo, JAX's CPU collectives.
  """
  if jax.distributed.is_initialized():
    return
  if "jax_cpu_collectives_implementation" in jax.config.values:  # absent in JAX versions where it is fixed
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
  jax.distributed.initialize(coordinator_address=coordinator_address, num_processes=num_processes,
                             process_id=process_id)


def seed_mesh(num_devices: int, num_seeds: int, distributed: bool = False, what: str | None = None) -> Mesh:
  """A 1-D mesh over ``num_devices`` devices (0 = all, of every process); the replica count
  ``num_seeds`` must divide evenly (``what`` names it in the error, e.g. seeds x sweep settings)."""
  if distributed:
    initialize_distributed()  # coordinator and process ids from the cluster's environment (see BUILD.md)
  devices = jax.devices()
  n = num_devices or len(devices)
  if n > len(devices):
    raise ValueError(f"config.num_devices={num_devices}: only {len(devices)} device(s) available "
                     f"({devices[0].platform})")
  if jax.process_count() > 1 and n != len(devices):
    raise ValueError(f"config.num_devices={num_devices}: a run over {jax.process_count()} processes shards "
                     f"the seeds over all {len(devices)} devices; set config.num_devices to 0")
  if num_seeds % n:
    if what:
      raise ValueError(f"{what} = {num_seeds} replicas is not a multiple of the {n} device(s) they are sharded "
                       f"over; change either, or set config.num_devices to a divisor of {num_seeds}")
    raise ValueError(f"config.num_seeds={num_seeds} is not a multiple of the {n} device(s) the seeds are "
                     f"sharded over; use a multiple of {n}, or set config.num_devices to a divisor of it")
  return Mesh(np.asarray(devices[:n]), (AXIS,))


def shard_seeds(tree, mesh: Mesh):
  """Places every leaf's leading (seed) axis on the mesh.

  Over several processes each one holds the whole (identical) tree and keeps its own devices'
  slices of a global array.
  """
  sharding = NamedSharding(mesh, PartitionSpec(AXIS))
  if jax.process_count() == 1:
    return jax.tree.map(lambda x: jax.device_put(x, sharding), tree)
  return jax.tree.map(lambda x: _global_array(x, sharding), tree)


def _global_array(x, sharding: NamedSharding):
  if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):  # typed keys travel as their raw data
    return jax.random.wrap_key_data(_global_array(jax.random.key_data(x), sharding), impl=jax.random.key_impl(x))
  host = np.asarray(x)
  return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])


def to_host(x) -> np.ndarray:
  """A seed-sharded array as numpy; across several processes, gathered from every process first."""
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils
    x = multihost_utils.process_allgather(x, tiled=True)
  return np.asarray(x)


def agreed_signal(signum: Optional[int]) -> Optional[int]:
  """The stop signal any process received (the largest number), or None: every process of a run
  stops at the same epoch, since saving a checkpoint takes them all."""
  if jax.process_count() == 1:
    return signum
  from jax.experimental import multihost_utils
  received = multihost_utils.process_allgather(np.int32(signum or 0))
  return int(received.max()) or None
