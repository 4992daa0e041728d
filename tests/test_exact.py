"""Exact-reversible mode: the integer-grid leapfrog retraces the forward phase bit for bit."""
import jax
import jax.numpy as jnp
import numpy as np
from absl.testing import absltest
from jax import lax

import rhel_jax
from rhel_jax.integrator import State, echo_phase, forward_phase, grid_leapfrog_step, to_grid
from tests.helpers import make_problem, rel_error


def _grid_rollout(params, model, state, inputs_tm):
  def body(carry, u):
    s, overflow = carry
    s, _, over = grid_leapfrog_step(params, model, s, u)
    return (s, overflow | over), None
  return jax.jit(lambda s, x: lax.scan(body, (s, jnp.array(False)), x)[0])(state, inputs_tm)


class ExactReversibilityTest(absltest.TestCase):

  def test_100000_steps_forward_and_back_is_bit_exact_in_float32(self):
    params, _, _, _, _ = make_problem(n_hidden=16, dtype=jnp.float32, w_scale=1.0)
    model = rhel_jax.ModelConfig(dt=0.2, exact_reversible=True, grid_bits=20)
    inputs = jax.random.normal(jax.random.key(1), (100_000, 2, 3), jnp.float32)
    k1, k2 = jax.random.split(jax.random.key(2))
    start = State(to_grid(jax.random.normal(k1, (2, 16)), model)[0], to_grid(jax.random.normal(k2, (2, 16)), model)[0])
    end, overflow = _grid_rollout(params, model, start, inputs)
    self.assertFalse(bool(overflow))
    self.assertFalse(bool(jnp.all(end.phi == start.phi)))  # it did move
    back, overflow = _grid_rollout(params, model, State(end.phi, -end.pi), inputs[::-1])
    self.assertFalse(bool(overflow))
    np.testing.assert_array_equal(back.phi, start.phi)
    np.testing.assert_array_equal(-back.pi, start.pi)

  def test_unnudged_echo_returns_to_the_start_with_zero_contrast(self):
    params, _, inputs, _, _ = make_problem(dtype=jnp.float32, steps=300)
    model = rhel_jax.ModelConfig(exact_reversible=True)
    inputs_tm = jnp.swapaxes(inputs, 0, 1)
    final, ys, _ = forward_phase(params, model, inputs_tm)
    self.assertFalse(bool(jnp.all(final.phi == 0)))
    end, contrast, _ = echo_phase(params, model, final, inputs_tm, jnp.ones_like(ys), jnp.zeros((2,), jnp.float32),
                                  jnp.array([1.0, -1.0]))
    # Back at the zero initial state, bit for bit, and the contrast of echo and forward phase is
    # exactly zero at every step (a float32 retrace would leave ~1e-5 of round-off here).
    np.testing.assert_array_equal(end.phi, 0)
    np.testing.assert_array_equal(end.pi, 0)
    for key in contrast:
      np.testing.assert_array_equal(contrast[key], 0)


class ExactGradientTest(absltest.TestCase):

  def test_rhel_in_exact_mode_approximates_bptt_of_the_float_map(self):
    params, _, inputs, targets, mask = make_problem(steps=100)
    float_model = rhel_jax.ModelConfig()
    exact_model = rhel_jax.ModelConfig(exact_reversible=True, grid_bits=26)
    _, ref = rhel_jax.gradient("bptt", params, float_model, inputs, targets, mask)
    _, exact_bptt = rhel_jax.gradient("bptt", params, exact_model, inputs, targets, mask)
    jax.tree.map(np.testing.assert_array_equal, exact_bptt, ref)  # BPTT ignores the grid
    for method, eps, tol in (("rhel_centered", 1e-3, 1e-4), ("rhel", 1e-4, 2e-3)):
      _, grads = rhel_jax.gradient(method, params, exact_model, inputs, targets, mask, eps=eps)
      err = max(rel_error(grads[k], ref[k]) for k in ref)
      self.assertLess(err, tol, method)

  def test_grid_overflow_is_reported_not_wrapped(self):
    params, _, inputs, targets, mask = make_problem(steps=50)
    model = rhel_jax.ModelConfig(exact_reversible=True, grid_bits=26)  # |phi| must stay below 16
    with self.assertRaisesRegex(ValueError, "grid overflowed.*grid_bits"):
      rhel_jax.gradient("rhel", params, model, inputs * 200.0, targets, mask)


if __name__ == "__main__":
  absltest.main()
