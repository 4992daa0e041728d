"""The phase-space state that every integrator step carries."""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

Array = jax.Array


class State(NamedTuple):
  """Phase-space state; ``phi`` and ``pi`` are ``(..., N)``."""
  phi: Array
  pi: Array


def zero_state(batch: int, n_hidden: int, dtype) -> State:
  """``phi = pi = 0``, each (batch, n_hidden)."""
  z = jnp.zeros((batch, n_hidden), dtype)
  return State(z, z)
