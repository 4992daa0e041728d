"""Bad input is a ValueError that names the field, never a silent NaN."""
import jax
import jax.numpy as jnp
from absl.testing import absltest, parameterized

import rhel_jax
from tests.helpers import make_problem


class ValidationTest(parameterized.TestCase):

  def setUp(self):
    super().setUp()
    self.params, self.model, self.inputs, self.targets, self.mask = make_problem(steps=6)

  def _call(self, method="rhel_centered", **overrides):
    args = dict(params=self.params, model=self.model, inputs=self.inputs, targets=self.targets,
                mask=self.mask)
    options = {k: overrides.pop(k) for k in list(overrides) if k not in args}
    args.update(overrides)
    return rhel_jax.gradient(method, args["params"], args["model"], args["inputs"], args["targets"],
                             args["mask"], **options)

  @parameterized.named_parameters(
      ("dt_zero", dict(dt=0.0), "dt"), ("dt_negative", dict(dt=-0.1), "dt"),
      ("beta_zero", dict(beta=0.0), "beta"), ("alpha_nan", dict(alpha=float("nan")), "alpha"),
      ("rho_unknown", dict(rho="relu6"), "rho"))
  def test_model_config(self, kwargs, field):
    with self.assertRaisesRegex(ValueError, field):
      rhel_jax.ModelConfig(**kwargs)

  @parameterized.named_parameters(("zero", 0.0), ("negative", -1e-3), ("nan", float("nan")),
                                  ("inf", float("inf")))
  def test_eps(self, eps):
    with self.assertRaisesRegex(ValueError, "eps"):
      self._call(eps=eps)

  def test_unknown_method_and_loss_and_option(self):
    with self.assertRaisesRegex(ValueError, "method.*'rhel2'"):
      self._call(method="rhel2")
    with self.assertRaisesRegex(ValueError, "loss.*'l2'"):
      self._call(loss="l2")
    with self.assertRaisesRegex(ValueError, "'k'.*'rhel'"):
      self._call(method="rhel", k=3)
    with self.assertRaisesRegex(ValueError, "k must"):
      self._call(method="tbptt", k=0)

  def test_shapes(self):
    with self.assertRaisesRegex(ValueError, "inputs"):
      self._call(inputs=self.inputs[..., :2])
    with self.assertRaisesRegex(ValueError, "inputs"):
      self._call(inputs=self.inputs[0])
    with self.assertRaisesRegex(ValueError, "targets"):
      self._call(targets=self.targets[:, :-1])
    with self.assertRaisesRegex(ValueError, "mask"):
      self._call(mask=self.mask[:, :-1])
    with self.assertRaisesRegex(ValueError, r"params\['W_out'\]"):
      self._call(params=dict(self.params, W_out=self.params["W_out"][:, :-1]))
    with self.assertRaisesRegex(ValueError, "missing keys"):
      self._call(params={k: v for k, v in self.params.items() if k != "b"})
    with self.assertRaisesRegex(ValueError, r"params\['b'\].*dtype"):
      self._call(params=dict(self.params, b=self.params["b"].astype(jnp.float32)))

  def test_ce_mean_targets_and_mask(self):
    p, m, x, y, mask = make_problem("ce_mean", steps=6)
    with self.assertRaisesRegex(ValueError, "targets.*class ids"):
      rhel_jax.gradient("bptt", p, m, x, y + 5, mask, loss="ce_mean")
    with self.assertRaisesRegex(ValueError, "targets"):
      rhel_jax.gradient("bptt", p, m, x, y.astype(jnp.float64), mask, loss="ce_mean")
    with self.assertRaisesRegex(ValueError, "mask.*at least one valid step"):
      rhel_jax.gradient("bptt", p, m, x, y, mask.at[0].set(0.0), loss="ce_mean")

  @parameterized.parameters("inputs", "targets", "mask")
  def test_non_finite_data(self, field):
    value = getattr(self, field)
    bad = value.at[(0,) * value.ndim].set(jnp.nan)
    with self.assertRaisesRegex(ValueError, f"{field}: contains 1 non-finite"):
      self._call(**{field: bad})

  def test_non_finite_params(self):
    with self.assertRaisesRegex(ValueError, r"params\['W'\]: contains"):
      self._call(params=dict(self.params, W=self.params["W"].at[0, 0].set(jnp.inf)))

  def test_diverging_dynamics_are_reported_not_returned(self):
    params, _, inputs, targets, mask = make_problem(steps=200)
    model = rhel_jax.ModelConfig(dt=50.0)  # far past the leapfrog stability limit
    for method in ("bptt", "rhel"):
      with self.assertRaisesRegex(ValueError, "non-finite.*diverged"):
        rhel_jax.gradient(method, params, model, inputs, targets, mask)

  def test_float64_without_x64_is_refused(self):
    jax.config.update("jax_enable_x64", False)
    try:
      with self.assertRaisesRegex(ValueError, "jax_enable_x64"):
        rhel_jax.init_params(jax.random.key(0), n_in=2, n_hidden=4, n_out=1, dtype=jnp.float64)
    finally:
      jax.config.update("jax_enable_x64", True)

  def test_init_params_shapes(self):
    with self.assertRaisesRegex(ValueError, "n_hidden"):
      rhel_jax.init_params(jax.random.key(0), n_in=2, n_hidden=0, n_out=1)
    p = rhel_jax.init_params(jax.random.key(0), n_in=4, n_hidden=32, n_out=3, dtype=jnp.float64)
    self.assertEqual({k: v.shape for k, v in p.items()},
                     {"W": (32, 32), "b": (32,), "B": (4, 32), "W_out": (3, 32), "b_out": (3,)})
    self.assertTrue(all(v.dtype == jnp.float64 for v in p.values()))

  def test_forward_shape(self):
    ys = rhel_jax.forward(self.params, self.model, self.inputs)
    self.assertEqual(ys.shape, self.targets.shape)


if __name__ == "__main__":
  absltest.main()
