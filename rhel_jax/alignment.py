"""How well a gradient estimate points where BPTT's does (the paper's Figure 1)."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array


def cosine(a: Array, b: Array) -> Array:
  """Cosine of two arrays of any (equal) shape, flattened.

  A zero array (e.g. the readout method's W gradient) is orthogonal to everything (0, not NaN);
  a non-finite one gives NaN.
  """
  norms = jnp.linalg.norm(a) * jnp.linalg.norm(b)
  return jnp.where(norms == 0, 0.0, jnp.vdot(a, b) / jnp.where(norms == 0, 1.0, norms))


def alignment_with(grads: dict[str, Array], ref: dict[str, Array]) -> dict[str, Array]:
  """``{'cos_<name>': cosine per tensor, 'cos_all': cosine of all tensors concatenated}``.

  ``grads`` and ``ref`` are dicts of the same arrays (a method's gradient and BPTT's)."""
  out = {f"cos_{k}": cosine(grads[k], ref[k]) for k in ref}
  flat = lambda g: jnp.concatenate([jnp.ravel(g[k]) for k in sorted(g)])
  out["cos_all"] = cosine(flat(grads), flat(ref))
  return out


def agreement(g, ref) -> dict[str, float]:
  """Host-side, in float64 whatever JAX's precision: ``{'cos': cosine, 'relerr': |g - ref| / |ref|}``
  of two arrays (flattened). For analyses of gradients already on the host; training uses
  :func:`cosine` on the device."""
  g = np.ravel(np.asarray(g, np.float64))
  ref = np.ravel(np.asarray(ref, np.float64))
  return {"cos": float(g @ ref / np.linalg.norm(g) / np.linalg.norm(ref)),
          "relerr": float(np.linalg.norm(g - ref) / np.linalg.norm(ref))}
