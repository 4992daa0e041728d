"""Every gradient method against an independent reference.

* rhel / rhel_centered against jax.grad BPTT, with the eps-scaling of their bias;
* the W update against the seed paper's contrastive Hebbian formula, computed from stored
  trajectories (which the library itself never stores);
* tbptt against a brute-force per-step loop; eprop against BPTT with stop_gradient.
"""
import itertools

import chex
import jax
import jax.numpy as jnp
import numpy as np
from absl.testing import absltest, parameterized
from jax import lax

import rhel_jax
from rhel_jax import State, leapfrog_step, readout, symmetric
from rhel_jax.losses import LOSSES
from tests.helpers import assert_tree_rel_close, cosine, make_problem, rel_error

LOSS_NAMES = ("mse", "bce", "ce_mean")


def _grad(method, problem, loss, **options):
  params, model, inputs, targets, mask = problem
  return rhel_jax.gradient(method, params, model, inputs, targets, mask, loss=loss, **options)


def _max_rel_error(grads, ref):
  return max(rel_error(grads[k], ref[k]) for k in ref)


class RhelMatchesBpttTest(parameterized.TestCase):

  @parameterized.parameters(*LOSS_NAMES)
  def test_centered_equals_bptt_in_float64(self, loss):
    problem = make_problem(loss)
    loss_ref, ref = _grad("bptt", problem, loss)
    value, grads = _grad("rhel_centered", problem, loss, eps=1e-5)
    np.testing.assert_allclose(value, loss_ref, rtol=1e-12)
    assert_tree_rel_close(self, grads, ref, 1e-6, f"rhel_centered/{loss}")

  @parameterized.parameters(*LOSS_NAMES)
  def test_centered_error_shrinks_like_eps_squared(self, loss):
    problem = make_problem(loss)
    _, ref = _grad("bptt", problem, loss)
    errors = [_max_rel_error(_grad("rhel_centered", problem, loss, eps=eps)[1], ref)
              for eps in (1e-2, 1e-3, 1e-4)]
    print(f"\nrhel_centered/{loss} max rel. error at eps=1e-2,1e-3,1e-4: {errors}")
    for coarse, fine in zip(errors, errors[1:]):
      self.assertBetween(coarse / fine, 60.0, 160.0)

  @parameterized.parameters(*LOSS_NAMES)
  def test_one_sided_error_shrinks_like_eps(self, loss):
    problem = make_problem(loss)
    _, ref = _grad("bptt", problem, loss)
    errors = [_max_rel_error(_grad("rhel", problem, loss, eps=eps)[1], ref) for eps in (1e-3, 1e-4, 1e-5)]
    print(f"\nrhel/{loss} max rel. error at eps=1e-3,1e-4,1e-5: {errors}")
    for coarse, fine in zip(errors, errors[1:]):
      self.assertBetween(coarse / fine, 7.0, 13.0)
    self.assertLess(errors[-1], 1e-3)

  def test_gradient_of_w_is_symmetric(self):
    problem = make_problem()
    for method in ("rhel", "rhel_centered", "bptt", "eprop", "tbptt"):
      w = np.asarray(_grad(method, problem, "mse")[1]["W"])
      np.testing.assert_allclose(w, w.T, rtol=0, atol=1e-14 * np.abs(w).max(), err_msg=method)

  def test_callable_loss_equals_named_loss(self):
    problem = make_problem("bce")
    custom = lambda ys, targets, mask: LOSSES["bce"](ys, targets, mask)
    for method in ("rhel_centered", "eprop"):
      chex.assert_trees_all_close(_grad(method, problem, custom), _grad(method, problem, "bce"), rtol=1e-12)

  def test_eps_is_per_sequence(self):
    # Duplicating the batch leaves a batch-mean loss and its gradient unchanged, and with the
    # per-sequence nudge the RHEL estimate (its bias included) is unchanged too.
    params, model, inputs, targets, mask = make_problem()
    twice = [jnp.concatenate([a, a]) for a in (inputs, targets, mask)]
    one = rhel_jax.gradient("rhel", params, model, inputs, targets, mask, eps=1e-2)
    two = rhel_jax.gradient("rhel", params, model, *twice, eps=1e-2)
    chex.assert_trees_all_close(one, two, rtol=1e-9)

  def test_default_eps_follows_dtype_and_mode(self):
    params, model, inputs, targets, mask = make_problem(steps=20)
    exact = rhel_jax.ModelConfig(exact_reversible=True)
    f32 = lambda tree: jax.tree.map(lambda a: a.astype(jnp.float32), tree)
    for p, m, x, y, k, want in ((params, model, inputs, targets, mask, 1e-5),
                                (f32(params), model, f32(inputs), f32(targets), f32(mask), 3e-4),
                                (f32(params), exact, f32(inputs), f32(targets), f32(mask), 1e-5)):
      self.assertEqual(rhel_jax.default_eps(p["W"].dtype, m), want)
      implicit = rhel_jax.gradient("rhel", p, m, x, y, k)
      chex.assert_trees_all_equal(implicit, rhel_jax.gradient("rhel", p, m, x, y, k, eps=want))
      other = rhel_jax.gradient("rhel", p, m, x, y, k, eps=10 * want)
      self.assertFalse(np.array_equal(implicit[1]["W"], other[1]["W"]))


def _trajectory(params, model, inputs_tm, state0):
  """Forward phase with the trajectory stored: states after each step and rho(mid)."""
  def body(s, u):
    s, r = leapfrog_step(params, model, s, u)
    return s, (s, r)
  return lax.scan(body, state0, inputs_tm)[1]


class HebbianFormulaTest(absltest.TestCase):

  def test_one_sided_w_update_is_the_contrastive_hebbian_rule(self):
    params, model, inputs, targets, mask = make_problem(batch=3, steps=30)
    eps = 1e-3
    batch, steps, _ = inputs.shape
    inputs_tm = jnp.swapaxes(inputs, 0, 1)
    z = jnp.zeros((batch, 16))
    states, r_fwd = _trajectory(params, model, inputs_tm, State(z, z))
    ys = readout(params, model, states.phi)
    dl_dy = jax.grad(lambda y: LOSSES["mse"](jnp.swapaxes(y, 0, 1), targets, mask))(ys)
    # Echo, written out step by step: impulse -eps*B*g at the echo position, then a step.
    s = State(states.phi[-1], -states.pi[-1])
    r_echo = []
    for j in range(steps):
      k = steps - 1 - j
      g = (1 - jnp.tanh(s.phi) ** 2) * (dl_dy[k] @ params["W_out"])
      s = State(s.phi, s.pi - eps * batch * g)
      s, r = leapfrog_step(params, model, s, inputs_tm[k])
      r_echo.append(r)
    r_echo = jnp.stack(r_echo)
    # Delta W = h/(eps B) * 1/(2 beta) * [sum_echo rho rho^T - sum_forward rho rho^T]
    outer = lambda r: jnp.einsum("tbi,tbj->ij", r, r)
    want = model.dt / (eps * batch) / (2 * model.beta) * (outer(r_echo) - outer(r_fwd))
    _, grads = rhel_jax.gradient("rhel", params, model, inputs, targets, mask, eps=eps)
    chex.assert_trees_all_close(grads["W"], want, rtol=1e-7, atol=1e-9 * float(jnp.abs(want).max()))


def _tbptt_brute_force(params, model, inputs, targets, mask, loss_fn, k):
  """sum_t <dL/dy_t, y_t(theta)>, y_t recomputed from the stop-gradient state k steps back."""
  batch, steps, _ = inputs.shape
  inputs_tm = jnp.swapaxes(inputs, 0, 1)
  z = jnp.zeros((batch, params["W"].shape[0]))
  states, _ = _trajectory(params, model, inputs_tm, State(z, z))
  states = jax.tree.map(lambda s0, s: jnp.concatenate([s0[None], s]), State(z, z), states)  # s_0..s_T
  ys = readout(params, model, states.phi[1:])
  loss, dl_dy = jax.value_and_grad(lambda y: loss_fn(jnp.swapaxes(y, 0, 1), targets, mask))(ys)

  def surrogate(p):
    total = 0.0
    for t in range(1, steps + 1):
      start = max(t - k, 0)
      s = jax.tree.map(lambda a: lax.stop_gradient(a[start]), states)
      for j in range(start, t):
        s = leapfrog_step(p, model, s, inputs_tm[j])[0]
      total += jnp.sum(dl_dy[t - 1] * readout(p, model, s.phi))
    return total
  return loss, jax.grad(surrogate)(params)


def _stop_gradient_bptt(params, model, inputs, targets, mask, loss_fn):
  """BPTT through the model with stop_gradient on the recurrent rho(phi) (e-prop's reference)."""
  rho, rho_prime = model.activation()

  def objective(p):
    def body(s, u):
      mid = s.phi + model.dt / 2 * s.pi
      drive = lax.stop_gradient(rho(mid)) @ symmetric(p["W"]) / model.beta + p["b"] + u @ p["B"]
      pi = s.pi - model.dt * (model.alpha * mid + rho_prime(mid) * drive)
      s = State(mid + model.dt / 2 * pi, pi)
      return s, readout(p, model, s.phi)
    z = jnp.zeros((inputs.shape[0], p["W"].shape[0]))
    ys = lax.scan(body, State(z, z), jnp.swapaxes(inputs, 0, 1))[1]
    return loss_fn(jnp.swapaxes(ys, 0, 1), targets, mask)
  return jax.value_and_grad(objective)(params)


class BaselinesTest(parameterized.TestCase):

  @parameterized.parameters(*itertools.product((1, 2, 3), ("mse", "ce_mean")))
  def test_tbptt_equals_brute_force(self, k, loss):
    problem = make_problem(loss, steps=9, batch=2, n_hidden=8)
    want = _tbptt_brute_force(*problem, LOSSES[loss], k)
    got = _grad("tbptt", problem, loss, k=k)
    chex.assert_trees_all_close(got, want, rtol=1e-10, atol=1e-12)

  @parameterized.parameters(12, 20)
  def test_tbptt_with_window_at_least_t_is_bptt(self, k):
    problem = make_problem(steps=12)
    chex.assert_trees_all_close(_grad("tbptt", problem, "mse", k=k), _grad("bptt", problem, "mse"),
                                rtol=1e-10)

  @parameterized.parameters(*itertools.product(LOSS_NAMES, (True, False)))
  def test_eprop_equals_stop_gradient_bptt(self, loss, online):
    # The online traces (forward mode) and the reverse-mode form give one gradient.
    problem = make_problem(loss)
    want = _stop_gradient_bptt(*problem, LOSSES[loss])
    chex.assert_trees_all_close(_grad("eprop", problem, loss, online=online), want, rtol=1e-10, atol=1e-12)

  def test_eprop_and_tbptt_are_approximations(self):
    # Sanity: the baselines are not secretly BPTT.
    problem = make_problem(steps=60)
    _, ref = _grad("bptt", problem, "mse")
    for method in ("eprop", "tbptt"):
      self.assertLess(cosine(_grad(method, problem, "mse")[1]["W"], ref["W"]), 0.99, method)


class ReadoutOnlyTest(parameterized.TestCase):

  @parameterized.parameters(*LOSS_NAMES)
  def test_readout_equals_jax_grad_restricted_to_the_readout(self, loss):
    problem = make_problem(loss, steps=50)
    params, model, inputs, targets, mask = problem
    inputs_tm = jnp.swapaxes(inputs, 0, 1)

    def objective(head):
      ys = rhel_jax.forward_phase({**params, **head}, model, inputs_tm).ys
      return LOSSES[loss](jnp.swapaxes(ys, 0, 1), targets, mask)

    head = {k: params[k] for k in ("W_out", "b_out")}
    want_loss, want = jax.value_and_grad(objective)(head)
    got_loss, got = _grad("readout", problem, loss)
    np.testing.assert_allclose(got_loss, want_loss, rtol=1e-12)
    chex.assert_trees_all_close({k: got[k] for k in head}, want, rtol=1e-10, atol=1e-13)
    for k in rhel_jax.model.HAMILTONIAN_PARAMS:  # the network itself never learns
      np.testing.assert_array_equal(got[k], np.zeros_like(params[k]))


# jit vs eager and vmap vs a loop, for every registered method: tests/test_method_contract.py.


if __name__ == "__main__":
  absltest.main()
