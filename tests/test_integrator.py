"""The leapfrog step: exact reversibility, energy conservation, force = -grad V; the phases' Hebbian accumulators."""

import chex
import jax
import jax.numpy as jnp
from absl.testing import absltest, parameterized
from jax import lax

import rhel_jax
from rhel_jax import State, leapfrog_step
from tests.helpers import make_problem


def _rollout(params, model, state, inputs_tm):
  step = lambda s, u: (leapfrog_step(params, model, s, u)[0], None)
  return lax.scan(step, state, inputs_tm)[0]


def _round_trip_error(dtype, steps=1000):
  params, model, inputs, _, _ = make_problem(n_hidden=32, batch=2, steps=steps, dtype=dtype)
  k1, k2 = jax.random.split(jax.random.key(7))
  start = State(jax.random.normal(k1, (2, 32), dtype), jax.random.normal(k2, (2, 32), dtype))
  inputs_tm = jnp.swapaxes(inputs, 0, 1)
  end = _rollout(params, model, start, inputs_tm)
  back = _rollout(params, model, State(end.phi, -end.pi), inputs_tm[::-1])
  scale = float(jnp.max(jnp.abs(start.phi)))
  return max(float(jnp.max(jnp.abs(back.phi - start.phi))),
             float(jnp.max(jnp.abs(-back.pi - start.pi)))) / scale


class ReversibilityTest(parameterized.TestCase):

  def test_float64_round_trip_over_1000_steps(self):
    err = _round_trip_error(jnp.float64)
    print(f"\nreversibility T=1000 float64: max relative error {err:.2e}")
    self.assertLess(err, 1e-10)

  def test_float32_round_trip_is_reported_and_bounded(self):
    err = _round_trip_error(jnp.float32)
    print(f"\nreversibility T=1000 float32: max relative error {err:.2e}")
    # Round-off accumulates along the trajectory; it must stay far below the state scale.
    self.assertLess(err, 1e-3)


class EnergyTest(parameterized.TestCase):

  def _max_drift(self, dt, total_time=40.0):
    params, model, _, _, _ = make_problem(n_hidden=16, batch=1, steps=1, w_scale=0.8, dt=dt)
    steps = int(round(total_time / dt))
    start = State(jnp.linspace(-1, 1, 16)[None], jnp.linspace(1, -0.5, 16)[None])
    u = jnp.zeros((1, 3))

    def body(s, _):
      s = leapfrog_step(params, model, s, u)[0]
      return s, rhel_jax.hamiltonian(params, model, s.phi, s.pi, u)[0]

    _, energies = lax.scan(body, start, None, length=steps)
    e0 = rhel_jax.hamiltonian(params, model, start.phi, start.pi, u)[0]
    return float(jnp.max(jnp.abs(energies - e0)) / jnp.abs(e0))

  def test_energy_drift_is_bounded_and_shrinks_like_h_squared(self):
    drifts = [self._max_drift(dt) for dt in (0.2, 0.1, 0.05)]
    print(f"\nenergy drift (max |dH|/H) for h=0.2,0.1,0.05: {drifts}")
    self.assertLess(drifts[0], 0.05)
    for coarse, fine in zip(drifts, drifts[1:]):
      self.assertBetween(coarse / fine, 3.0, 5.0)  # second order: halving h quarters the drift

  @parameterized.parameters("tanh", "sigmoid", "identity")
  def test_force_is_minus_grad_potential(self, rho):
    params, _, inputs, _, _ = make_problem()
    model = rhel_jax.ModelConfig(rho=rho)
    # Non-symmetric stored W: the force must use its symmetric part, like V does.
    params = dict(params, W=params["W"] + jnp.triu(jnp.ones_like(params["W"])) * 0.3)
    phi = jax.random.normal(jax.random.key(3), (4, 16))
    u = inputs[:, 0]
    want = jax.grad(lambda x: jnp.sum(rhel_jax.potential(params, model, x, u)))(phi)
    chex.assert_trees_all_close(rhel_jax.grad_potential(params, model, phi, u), want, rtol=1e-12, atol=1e-12)

  def test_callable_activation_matches_named(self):
    params, model, inputs, _, _ = make_problem()
    custom = rhel_jax.ModelConfig(rho=lambda x: jnp.tanh(x))
    chex.assert_trees_all_close(rhel_jax.forward(params, custom, inputs),
                                rhel_jax.forward(params, model, inputs), rtol=1e-12)


class StepJitTest(absltest.TestCase):

  def test_jitted_step_agrees_with_eager(self):
    params, model, inputs, _, _ = make_problem()
    state = State(jnp.ones((4, 16)) * 0.3, jnp.ones((4, 16)) * -0.2)
    step = jax.jit(lambda p, s, u: leapfrog_step(p, model, s, u))
    got = step(params, state, inputs[:, 0])
    want = leapfrog_step(params, model, state, inputs[:, 0])
    chex.assert_trees_all_close(got, want, rtol=1e-12)
    chex.assert_shape(got[0].phi, (4, 16))


class HebbianAccumulatorTest(absltest.TestCase):

  def test_packed_terms_are_the_three_hebbian_terms(self):
    k1, k2, k3 = jax.random.split(jax.random.key(3), 3)
    left, right = jax.random.normal(k1, (8, 6), jnp.float64), jax.random.normal(k2, (8, 6), jnp.float64)
    u = jax.random.normal(k3, (8, 3), jnp.float64)
    packed = rhel_jax.hebbian.packed_terms(left, right, u)
    self.assertEqual(packed.shape, (6 + 1 + 3, 6))
    chex.assert_trees_all_close(rhel_jax.hebbian.unpack_terms(packed), rhel_jax.hebbian_terms(left, right, u),
                                rtol=1e-13, atol=1e-13)

  def test_compensated_sum_keeps_what_a_plain_float32_sum_loses(self):
    # 1 + 20000 * 1e-8: each 1e-8 is below half an ulp of 1 in float32, so a plain sum never moves.
    params = {"W": jnp.zeros((2, 2), jnp.float32), "B": jnp.zeros((1, 2), jnp.float32)}
    one = jnp.ones((4, 2), jnp.float32)
    tiny = jnp.full((4, 2), 1e-8, jnp.float32)
    for acc, expected in ((rhel_jax.hebbian.COMPENSATED, 1.0 + 2e-4), (rhel_jax.hebbian.PLAIN, 1.0)):
      add = jax.jit(lambda sums, x: lax.fori_loop(0, 20000, lambda _, s: acc.add(s, x), sums))
      sums = add(acc.add(acc.zero(params), one), tiny)
      self.assertEqual(sums.shape[-2:], (4, 2))
      total = acc.total(sums)
      self.assertAlmostEqual(float(total["b"][0]), expected, delta=1e-7)
      self.assertAlmostEqual(float(total["W"][0, 1]), expected, delta=1e-7)


if __name__ == "__main__":
  absltest.main()
