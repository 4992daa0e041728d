"""Seeds sharded over devices with JAX's SPMD machinery (a 1-D ``Mesh`` and ``NamedSharding``).

The trainer's functions are ``vmap``s over seeds; placing their seed-leading inputs on a mesh
axis makes ``jit`` partition that vmap across devices, and since seeds never interact no
collective is needed. With one device this is a no-op.
"""
from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

AXIS = "seeds"


def seed_mesh(num_devices: int, num_seeds: int, distributed: bool = False, what: str | None = None) -> Mesh:
  """A 1-D mesh over ``num_devices`` devices (0 = all); the replica count ``num_seeds`` must divide
  evenly (``what`` names it in the error, e.g. seeds x sweep settings)."""
  if distributed:
    jax.distributed.initialize()  # coordinator and process ids from the environment (see BUILD.md)
  devices = jax.devices()
  n = num_devices or len(devices)
  if n > len(devices):
    raise ValueError(f"config.num_devices={num_devices}: only {len(devices)} device(s) available "
                     f"({devices[0].platform})")
  if num_seeds % n:
    if what:
      raise ValueError(f"{what} = {num_seeds} replicas is not a multiple of the {n} device(s) they are sharded "
                       f"over; change either, or set config.num_devices to a divisor of {num_seeds}")
    raise ValueError(f"config.num_seeds={num_seeds} is not a multiple of the {n} device(s) the seeds are "
                     f"sharded over; use a multiple of {n}, or set config.num_devices to a divisor of it")
  return Mesh(np.asarray(devices[:n]), (AXIS,))


def shard_seeds(tree, mesh: Mesh):
  """Places every leaf's leading (seed) axis on the mesh."""
  sharding = NamedSharding(mesh, PartitionSpec(AXIS))
  return jax.tree.map(lambda x: jax.device_put(x, sharding), tree)
