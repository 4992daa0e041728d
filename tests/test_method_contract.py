"""The contract every registered gradient method keeps, run over the whole registry.

A method registered with ``rhel_jax.register`` is picked up here with no other change; this module
itself registers a test-only method (BPTT with ``stop_gradient`` on ``W``) to show it.
"""
import dataclasses
import functools
import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
from absl.testing import absltest, parameterized

import rhel_jax
from rhel_jax import layer
from rhel_jax.losses import LOSSES
from tests.helpers import make_problem, rel_error


def _bptt_frozen_w(params, model, inputs_tm, targets, mask, loss_fn):
  """BPTT with W held constant: W's gradient is zero, every other tensor's is BPTT's."""
  frozen = {**params, "W": jax.lax.stop_gradient(params["W"])}
  loss, grads = rhel_jax.bptt(frozen, model, inputs_tm, targets, mask, loss_fn)
  return loss, {**grads, "W": jnp.zeros_like(params["W"])}


# Registered at import, so the parameterisation below sees it like any other entry.
rhel_jax.register(rhel_jax.Method("test_bptt_frozen_w", _bptt_frozen_w, bptt_rtol=1e-10,
                                  trained=("b", "B", "W_out", "b_out")), replace=True)


def tearDownModule():
  rhel_jax.unregister("test_bptt_frozen_w")


NAMES = tuple(rhel_jax.METHODS)
STEPS = 20
LOSS_NAMES = ("mse", "bce", "ce_mean")


def _scan_unrolls(jaxpr):
  """The ``unroll`` of every ``lax.scan`` in a jaxpr, nested ones included."""
  for eqn in jaxpr.eqns:
    if eqn.primitive.name == "scan":
      yield eqn.params["unroll"]
    for value in eqn.params.values():
      for sub in value if isinstance(value, (tuple, list)) else (value,):
        sub = getattr(sub, "jaxpr", sub)  # a ClosedJaxpr holds its Jaxpr
        if hasattr(sub, "eqns"):
          yield from _scan_unrolls(sub)


@functools.cache
def _problem(loss, seed=0):
  return make_problem(loss, steps=STEPS, seed=seed)


@functools.cache
def _result(name, loss):
  """The method's (loss, grads) on the float64 contract problem, computed once per session."""
  params, model, inputs, targets, mask = _problem(loss)
  return rhel_jax.gradient(name, params, model, inputs, targets, mask, loss=loss)


class MethodContractTest(parameterized.TestCase):

  def _run(self, name, problem, loss="mse"):
    params, model, inputs, targets, mask = problem
    return rhel_jax.gradient(name, params, model, inputs, targets, mask, loss=loss)

  @parameterized.parameters(*NAMES)
  def test_shapes_dtypes_symmetry_and_untrained_tensors(self, name):
    method = rhel_jax.METHODS[name]
    params = _problem("mse")[0]
    for loss in LOSS_NAMES:
      value, grads = _result(name, loss)
      chex.assert_shape(value, ())
      self.assertTrue(np.isfinite(value), f"{name}/{loss}: loss {value}")
      self.assertEqual(sorted(grads), sorted(params), name)
      for k, g in grads.items():
        chex.assert_equal_shape((g, params[k]))
        self.assertEqual(g.dtype, params[k].dtype, f"{name}: grads['{k}'] dtype")
        self.assertTrue(np.all(np.isfinite(g)), f"{name}/{loss}: grads['{k}'] not finite")
        if k not in method.trained:
          np.testing.assert_array_equal(g, np.zeros_like(g), err_msg=f"{name}: untrained {k} got a gradient")
        elif loss == "mse":
          self.assertGreater(float(jnp.linalg.norm(g)), 0.0, f"{name}: trained {k} got no gradient")
      if method.symmetric_w:
        np.testing.assert_allclose(grads["W"], grads["W"].T, rtol=0, atol=1e-14 * float(jnp.max(jnp.abs(grads["W"]))),
                                   err_msg=f"{name}: W gradient not symmetric")

  @parameterized.parameters(*NAMES)
  def test_agrees_with_bptt_within_its_declared_tolerance(self, name):
    method = rhel_jax.METHODS[name]
    for loss in LOSS_NAMES:
      ref_loss, ref = _result("bptt", loss)
      value, grads = _result(name, loss)
      np.testing.assert_allclose(value, ref_loss, rtol=1e-12, err_msg=f"{name}: loss differs from the forward's")
      errors = {k: rel_error(grads[k], ref[k]) for k in method.trained}
      if math.isinf(method.bptt_rtol):
        continue  # an approximate baseline: every other contract still holds
      worst = max(errors, key=errors.get)
      self.assertLessEqual(errors[worst], method.bptt_rtol,
                           f"{name}/{loss}: grads['{worst}'] relative error {errors[worst]:.2e} to BPTT "
                           f"is above its declared bptt_rtol {method.bptt_rtol:g}")

  @parameterized.parameters(*NAMES)
  def test_jit_equals_eager(self, name):
    method = rhel_jax.METHODS[name]
    params, model, inputs, targets, mask = make_problem(steps=8)
    with jax.disable_jit():
      want = method.bind(model, "mse")(params, inputs, targets, mask)
    got = rhel_jax.gradient(name, params, model, inputs, targets, mask)
    # Only float reassociation may differ; the nudged estimators amplify it by ~1/eps (float64
    # round-off / eps 1e-5 ~ 2e-11 of the gradient's scale: an absolute 2e-12 on this problem was
    # seen with JAX 0.12, so their atol is 1e-10; the others keep 1e-12).
    atol = 1e-10 if "eps" in method.option_names else 1e-12
    chex.assert_trees_all_close(got, want, rtol=1e-8, atol=atol)

  @parameterized.parameters(*NAMES)
  def test_every_scan_follows_the_model_unroll(self, name):
    params, model, inputs, targets, mask = _problem("mse")
    unrolled = dataclasses.replace(model, unroll=3)
    jaxpr = jax.make_jaxpr(rhel_jax.METHODS[name].bind(unrolled, "mse"))(params, inputs, targets, mask).jaxpr
    self.assertEqual(set(_scan_unrolls(jaxpr)), {3})
    if rhel_jax.METHODS[name].vjp is not None:  # the layer's forward and backward passes too
      hamiltonian = {k: params[k] for k in ("W", "b", "B")}
      layer_loss = lambda p, x: jnp.sum(layer.hamiltonian_layer(p, unrolled, x, method=name) ** 2)
      jaxpr = jax.make_jaxpr(jax.grad(layer_loss, argnums=(0, 1)))(hamiltonian, jnp.swapaxes(inputs, 0, 1)).jaxpr
      self.assertEqual(set(_scan_unrolls(jaxpr)), {3})

  @parameterized.parameters(*NAMES)
  def test_unroll_changes_only_round_off(self, name):
    # Every scan of every method follows ModelConfig.unroll (1 on CPU by default).
    params, model, inputs, targets, mask = _problem("mse")
    self.assertEqual(model.scan_unroll(), 1)
    got = rhel_jax.gradient(name, params, dataclasses.replace(model, unroll=4), inputs, targets, mask)
    atol = 1e-10 if "eps" in rhel_jax.METHODS[name].option_names else 1e-12  # see test_jit_equals_eager
    chex.assert_trees_all_close(got, _result(name, "mse"), rtol=1e-8, atol=atol)

  @parameterized.parameters(*NAMES)
  def test_vmap_over_seeds_equals_a_loop(self, name):
    problems = [_problem("mse", seed=s) for s in range(3)]
    params, inputs, targets, mask = (jax.tree.map(lambda *xs: jnp.stack(xs), *[p[i] for p in problems])
                                     for i in (0, 2, 3, 4))
    model = problems[0][1]
    out = jax.vmap(lambda p, x, y, m: rhel_jax.gradient(name, p, model, x, y, m))(params, inputs, targets, mask)
    for seed, problem in enumerate(problems):
      single = _result(name, "mse") if seed == 0 else self._run(name, problem)
      chex.assert_trees_all_close(jax.tree.map(lambda a: a[seed], out), single, rtol=1e-11, atol=1e-13)

  @parameterized.parameters(*NAMES)
  def test_float32_is_finite_and_keeps_dtype(self, name):
    params, model, inputs, targets, mask = make_problem("bce", steps=STEPS, dtype=jnp.float32)
    value, grads = rhel_jax.gradient(name, params, model, inputs, targets, mask, loss="bce")
    self.assertTrue(np.isfinite(value))
    for k, g in grads.items():
      self.assertEqual(g.dtype, jnp.float32, f"{name}: grads['{k}']")
      self.assertTrue(np.all(np.isfinite(g)), f"{name}: grads['{k}']")

  def test_registry_covers_the_paper_methods_and_rejects_duplicates(self):
    for name in ("bptt", "rhel", "rhel_centered", "eprop", "tbptt", "readout"):
      self.assertIn(name, rhel_jax.METHODS)
    with self.assertRaisesRegex(ValueError, "already registered"):
      rhel_jax.register(rhel_jax.Method("bptt", rhel_jax.bptt))
    with self.assertRaisesRegex(ValueError, "unknown gradient method 'nope'"):
      self._run("nope", make_problem(steps=5))
    with self.assertRaisesRegex(ValueError, r"option\(s\) \['eps'\] not accepted by method 'bptt'"):
      params, model, inputs, targets, mask = make_problem(steps=5)
      rhel_jax.gradient("bptt", params, model, inputs, targets, mask, eps=1e-3)


if __name__ == "__main__":
  absltest.main()
