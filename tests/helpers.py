"""Small shared fixtures for the tests."""
import jax
import jax.numpy as jnp

import rhel_jax
from rhel_jax.alignment import agreement
from rhel_jax.losses import CLASSIFICATION_LOSSES


def make_problem(loss="mse", *, n_in=3, n_hidden=16, n_out=2, batch=4, steps=40, seed=0,
                 w_scale=0.5, in_scale=0.5, input_scale=0.5, dtype=jnp.float64, dt=0.2):
  """A random network and a batch of data for the given loss: (params, model, inputs, targets, mask)."""
  k_p, k_x, k_y = jax.random.split(jax.random.key(seed), 3)
  params = rhel_jax.init_params(k_p, n_in=n_in, n_hidden=n_hidden, n_out=n_out, dtype=dtype,
                                w_scale=w_scale, in_scale=in_scale)
  model = rhel_jax.ModelConfig(alpha=1.0, beta=1.0, dt=dt)
  inputs = input_scale * jax.random.normal(k_x, (batch, steps, n_in), dtype)
  mask = jnp.ones((batch, steps), dtype)
  if loss == "mse":
    targets = 0.5 * jax.random.normal(k_y, (batch, steps, n_out), dtype)
  elif loss == "bce":
    targets = jax.random.bernoulli(k_y, 0.5, (batch, steps, n_out)).astype(dtype)
    mask = mask.at[:, : steps // 2].set(0.0)  # a recall window, as in the copy task
  elif loss in CLASSIFICATION_LOSSES:
    targets = jax.random.randint(k_y, (batch,), 0, n_out)
    lengths = jnp.arange(batch) % 3 + steps - 2  # variable lengths: padded tails are masked out
    mask = (jnp.arange(steps)[None, :] < lengths[:, None]).astype(dtype)
  else:
    raise ValueError(loss)
  return params, model, inputs, targets, mask


def rel_error(a, b):
  return agreement(a, b)["relerr"]


def cosine(a, b):
  return agreement(a, b)["cos"]


def assert_tree_rel_close(test, got, want, rtol, what=""):
  """Same tree structure, then a per-leaf relative error with the leaf named on failure."""
  test.assertEqual(jax.tree.structure(got), jax.tree.structure(want))
  for key in want:
    err = rel_error(got[key], want[key])
    test.assertLess(err, rtol, f"{what} grads['{key}']: relative error {err:.3e} >= {rtol:g}")
