"""Exact-reversible mode: the integer-grid leapfrog retraces the forward phase bit for bit."""
import dataclasses
from unittest import mock

import chex
import jax
import jax.numpy as jnp
import numpy as np
from absl.testing import absltest, parameterized
from jax import lax

import rhel_jax
from rhel_jax import exact as grid
from rhel_jax.exact import from_grid, grid_leapfrog_step, to_grid, twin_step
from rhel_jax.integrator import State, echo_phase, forward_phase, leapfrog_step
from tests.helpers import make_problem, rel_error


def _grid_rollout(params, model, state, inputs_tm):
  def body(carry, u):
    s, overflow = carry
    s, _, over = grid_leapfrog_step(params, model, s, u)
    return (s, overflow | jnp.any(over)), None
  return jax.jit(lambda s, x: lax.scan(body, (s, jnp.array(False)), x)[0])(state, inputs_tm)


class ExactReversibilityTest(parameterized.TestCase):

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

  @parameterized.parameters(True, False)
  def test_unnudged_echo_returns_to_the_start_with_zero_contrast(self, share_matmul):
    params, _, inputs, _, _ = make_problem(dtype=jnp.float32, steps=300)
    model = rhel_jax.ModelConfig(exact_reversible=True)
    inputs_tm = jnp.swapaxes(inputs, 0, 1)
    final, ys, _, _ = forward_phase(params, model, inputs_tm)
    self.assertFalse(bool(jnp.all(final.phi == 0)))
    with mock.patch.object(grid, "_share_twin_matmul", lambda: share_matmul):
      end, contrast, _, _ = echo_phase(params, model, final, inputs_tm, jnp.ones_like(ys),
                                    jnp.zeros((2,), jnp.float32), jnp.array([1.0, -1.0]))
    # Back at the zero initial state, bit for bit, and the contrast of echo and forward phase is
    # exactly zero at every step (a float32 retrace would leave ~1e-5 of round-off here).
    np.testing.assert_array_equal(end.phi, 0)
    np.testing.assert_array_equal(end.pi, 0)
    for key in contrast:
      np.testing.assert_array_equal(contrast[key], 0)


  def test_unnudged_echo_is_exact_under_jit_and_a_seed_vmap(self):
    # How the experiments run it: one program, vmapped over seeds (a batched matmul per step).
    _, _, inputs, _, _ = make_problem(dtype=jnp.float32, steps=200)
    model = rhel_jax.ModelConfig(exact_reversible=True)
    inputs_tm = jnp.swapaxes(inputs, 0, 1)

    def run(key):
      params = rhel_jax.init_params(key, inputs.shape[-1], 32, 2, w_scale=0.5)
      final, ys, _, _ = forward_phase(params, model, inputs_tm)
      end, contrast, _, _ = echo_phase(params, model, final, inputs_tm, jnp.ones_like(ys), jnp.zeros((2,), jnp.float32),
                                    jnp.array([1.0, -1.0], jnp.float32))
      return final, end, contrast
    final, end, contrast = jax.jit(jax.vmap(run))(jax.random.split(jax.random.key(0), 3))
    self.assertTrue(bool(jnp.all(jnp.any(final.phi != 0, axis=(1, 2)))))  # every seed moved
    np.testing.assert_array_equal(end.phi, 0)
    np.testing.assert_array_equal(end.pi, 0)
    for key in contrast:
      np.testing.assert_array_equal(contrast[key], 0)


class DeviationTest(parameterized.TestCase):

  @parameterized.parameters("tanh", "sigmoid", "identity")
  def test_activation_difference_keeps_relative_precision_in_float32(self, name):
    model = rhel_jax.ModelConfig(rho=name)
    rho, rho_prime = model.activation()
    x = jnp.linspace(-3.0, 3.0, 101).astype(jnp.float32)
    for size in (1e-1, 1e-4, 1e-7):
      d = (size * jnp.cos(7.0 * x)).astype(jnp.float32)
      x64, d64 = x.astype(jnp.float64), d.astype(jnp.float64)  # the same values, in float64 (x64 is on)
      want_r, want_rp = rho(x64 + d64) - rho(x64), rho_prime(x64 + d64) - rho_prime(x64)
      got_r, got_rp = model.activation_difference()(x, d)
      self.assertEqual(got_r.dtype, jnp.float32)
      # Error relative to the size of the difference itself, whatever that size.
      self.assertLess(float(jnp.max(jnp.abs(got_r - want_r)) / jnp.max(jnp.abs(want_r))), 1e-6, size)
      if name != "identity":
        self.assertLess(float(jnp.max(jnp.abs(got_rp - want_rp)) / jnp.max(jnp.abs(want_rp))), 1e-6, size)
    # The plain float32 difference loses the 1e-7 deviation almost entirely.
    naive = rho(x + d) - rho(x)
    if name != "identity":
      self.assertGreater(rel_error(naive, want_r), 0.1)

  @parameterized.parameters("tanh", "sigmoid")
  def test_activation_difference_is_finite_and_right_for_large_deviations_in_saturation(self, name):
    model = rhel_jax.ModelConfig(rho=name)
    rho, rho_prime = model.activation()
    x = jnp.array([30.0, 30.0, -30.0, 12.0, 0.3], jnp.float32)
    d = jnp.array([-60.0, 0.2, 55.0, -1e-3, 40.0], jnp.float32)
    got_r, got_rp = model.activation_difference()(x, d)
    x64, d64 = x.astype(jnp.float64), d.astype(jnp.float64)
    np.testing.assert_allclose(got_r, rho(x64 + d64) - rho(x64), atol=1e-6)
    np.testing.assert_allclose(got_rp, rho_prime(x64 + d64) - rho_prime(x64), atol=1e-6)

  def test_activation_difference_of_a_callable_is_the_plain_difference(self):
    model = rhel_jax.ModelConfig(rho=jnp.sin)
    x, d = jnp.linspace(-2, 2, 9), jnp.full((9,), 0.3)
    got_r, got_rp = model.activation_difference()(x, d)
    np.testing.assert_allclose(got_r, jnp.sin(x + d) - jnp.sin(x), rtol=1e-12)
    np.testing.assert_allclose(got_rp, jnp.cos(x + d) - jnp.cos(x), rtol=1e-12)

  @parameterized.parameters(True, False)
  def test_twin_step_deviations_are_the_difference_of_two_leapfrog_steps(self, share_matmul):
    params, _, inputs, _, _ = make_problem(n_hidden=16, batch=3)  # float64
    model = rhel_jax.ModelConfig(dt=0.5, exact_reversible=True)
    keys = jax.random.split(jax.random.key(3), 4)
    # Pi a multiple of 4 makes the grid's half drift (h/2 = 1/4) exact, so the grid midpoint is the
    # float leapfrog's midpoint and only the rounding of the twin's kick differs, which the
    # deviations do not see.
    phi = to_grid(jax.random.normal(keys[0], (3, 16)), model)[0]
    pi = 4 * to_grid(jax.random.normal(keys[1], (3, 16)) / 4, model)[0]
    dev = State(0.2 * jax.random.normal(keys[2], (2, 3, 16)), 0.2 * jax.random.normal(keys[3], (2, 3, 16)))
    u = inputs[:, 0]
    with mock.patch.object(grid, "_share_twin_matmul", lambda: share_matmul):
      # A fresh function per case, so that no trace from the other case is reused.
      new_twin, r, overflow, new_dev, dr = jax.jit(lambda *a: twin_step(params, model, *a))(State(phi, pi), dev, u)
    self.assertFalse(bool(jnp.any(overflow)))
    # The deviations leave the twin alone: bit for bit the forward phase's grid step.
    alone = jax.jit(grid_leapfrog_step, static_argnums=1)(params, model, State(phi, pi), u)
    np.testing.assert_array_equal(new_twin.phi, alone[0].phi)
    np.testing.assert_array_equal(new_twin.pi, alone[0].pi)
    np.testing.assert_array_equal(r, alone[1])
    ref = State(from_grid(phi, model, jnp.float64), from_grid(pi, model, jnp.float64))
    new_ref, r_ref = leapfrog_step(params, model, ref, u)
    new_full, r_full = leapfrog_step(params, model, State(ref.phi + dev.phi, ref.pi + dev.pi), u)
    np.testing.assert_allclose(r, r_ref, rtol=1e-14)
    np.testing.assert_allclose(new_dev.phi, new_full.phi - new_ref.phi, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(new_dev.pi, new_full.pi - new_ref.pi, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(dr, r_full - r_ref, rtol=1e-10, atol=1e-12)

  def test_grid_step_reports_each_way_out_of_the_int32_range(self):
    params, _, inputs, _, _ = make_problem(n_hidden=8, batch=2, dtype=jnp.float32)
    model = rhel_jax.ModelConfig(dt=0.2, exact_reversible=True, grid_bits=26)
    zero = jnp.zeros((2, 8), jnp.int32)
    step = lambda p, phi, pi: bool(jnp.any(grid_leapfrog_step(p, model, State(phi, pi), inputs[:, 0])[2]))
    self.assertFalse(step(params, zero, zero))
    # A kick of h * 100 / 2**-26 = 1.3e9 grid units passes the limit 2**30; of h * 1e4, int32 itself.
    for bias in (100.0, 1e4):
      self.assertTrue(step({**params, "b": params["b"] + bias}, zero, zero), bias)
    self.assertTrue(step({**params, "W": params["W"] * jnp.nan}, zero, zero))  # NaN force
    near, out = jnp.full((2, 8), 2 ** 30 - 100, jnp.int32), jnp.full((2, 8), 1000, jnp.int32)
    self.assertTrue(step(params, near, out))  # the midpoint drifts past 2**30
    self.assertTrue(step({**params, "b": params["b"] - 10.0}, zero, near))  # the kick pushes pi past it
    self.assertFalse(step(params, near, zero))  # the force pulls phi back inside: no false alarm


class ExactGradientTest(absltest.TestCase):

  def test_float32_exact_one_sided_error_tracks_float64(self):
    # Weakly coupled network, small eps: float64's one-sided error is its O(eps) bias; plain
    # float32 is swamped by the echo's round-off divided by eps; exact float32 matches float64.
    params, model, inputs, targets, mask = make_problem(steps=1000, w_scale=0.1, in_scale=0.1)
    mask = mask.at[:, :-100].set(0.0)
    _, ref = rhel_jax.gradient("bptt", params, model, inputs, targets, mask)
    f32 = lambda tree: jax.tree.map(lambda a: a.astype(jnp.float32), tree)
    exact = rhel_jax.ModelConfig(exact_reversible=True)
    err = lambda g: rel_error(np.concatenate([np.ravel(g[k]) for k in ref]),
                              np.concatenate([np.ravel(ref[k]) for k in ref]))
    for eps in (1e-4, 1e-6):
      e64 = err(rhel_jax.gradient("rhel", params, model, inputs, targets, mask, eps=eps)[1])
      e32 = err(rhel_jax.gradient("rhel", f32(params), model, f32(inputs), f32(targets), f32(mask), eps=eps)[1])
      e32x = err(rhel_jax.gradient("rhel", f32(params), exact, f32(inputs), f32(targets), f32(mask), eps=eps)[1])
      self.assertLess(e32x, 1.2 * e64, f"eps={eps}")
      if eps == 1e-6:
        self.assertGreater(e32, 20 * e64)  # the plain float32 estimate really is broken here

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

  def test_unroll_changes_only_round_off(self):
    # The grid arithmetic is exact whatever the unroll; only the floating-point deviations and
    # sums may round differently.
    params, model, inputs, targets, mask = make_problem(steps=30, dtype=jnp.float32)
    exact = rhel_jax.ModelConfig(exact_reversible=True)
    for method in ("rhel", "rhel_centered"):
      want = rhel_jax.gradient(method, params, exact, inputs, targets, mask)
      got = rhel_jax.gradient(method, params, dataclasses.replace(exact, unroll=4), inputs, targets, mask)
      chex.assert_trees_all_close(got, want, rtol=1e-5, atol=1e-6)

  def test_grid_overflow_is_reported_not_wrapped(self):
    params, _, inputs, targets, mask = make_problem(steps=50)
    model = rhel_jax.ModelConfig(exact_reversible=True, grid_bits=26)  # |phi| must stay below 16
    with self.assertRaisesRegex(ValueError, "grid overflowed.*grid_bits"):
      rhel_jax.gradient("rhel", params, model, inputs * 200.0, targets, mask)


if __name__ == "__main__":
  absltest.main()
