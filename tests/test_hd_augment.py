"""On-the-fly augmentation (data/augment.py): reproducible from the key, identity at zero strength,
padding respected, shapes and dtypes kept, and usable under jit and vmap."""
import dataclasses

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl.testing import absltest, parameterized

from data import augment as aug

ALL = aug.AugmentConfig(time_stretch=0.2, band_shift=2.0, band_warp=0.15, time_masks=2, time_mask_width=5,
                        freq_masks=2, freq_mask_width=3, noise_std=0.3)
ONE_EACH = {
    "time_stretch": dict(time_stretch=0.2),
    "band_shift": dict(band_shift=2.0),
    "band_warp": dict(band_warp=0.15),
    "time_masks": dict(time_masks=2, time_mask_width=5),
    "freq_masks": dict(freq_masks=2, freq_mask_width=3),
    "noise": dict(noise_std=0.3),
    "all": dataclasses.asdict(ALL),
}


def batch(dtype=jnp.float32, b=4, t=30, f=12, seed=0):
  """Random features, zero on the padded tail; lengths 30, 23, 16, 9."""
  x = jax.random.normal(jax.random.key(seed), (b, t, f), dtype)
  lengths = t - 7 * jnp.arange(b)
  mask = (jnp.arange(t)[None, :] < lengths[:, None]).astype(dtype)
  return x * mask[..., None], mask


class AugmentTest(parameterized.TestCase):

  @parameterized.named_parameters(*ONE_EACH.items())
  def test_same_key_same_output_other_key_differs(self, fields):
    cfg = aug.AugmentConfig(**fields)
    x, m = batch()
    a = aug.augment(jax.random.key(1), x, m, cfg)
    b = aug.augment(jax.random.key(1), x, m, cfg)
    c = aug.augment(jax.random.key(2), x, m, cfg)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    self.assertFalse(np.array_equal(a[0], c[0]))
    self.assertFalse(np.array_equal(a[0], x))

  @parameterized.named_parameters(*ONE_EACH.items())
  def test_padding_stays_zero_and_shapes_dtypes_kept(self, fields):
    cfg = aug.AugmentConfig(**fields)
    for dtype in (jnp.float32, jnp.float64):
      x, m = batch(dtype)
      y, m2 = aug.augment(jax.random.key(3), x, m, cfg)
      self.assertEqual((y.shape, y.dtype, m2.shape, m2.dtype), (x.shape, x.dtype, m.shape, m.dtype))
      self.assertTrue(np.all(np.asarray(y)[np.asarray(m2) == 0] == 0))
      # The mask stays a prefix of ones.
      m2 = np.asarray(m2)
      np.testing.assert_array_equal(m2, (np.arange(m2.shape[1])[None] < m2.sum(1)[:, None]).astype(m2.dtype))

  def test_zero_strength_is_identity(self):
    x, m = batch()
    cfg = aug.AugmentConfig()
    self.assertFalse(cfg.active)
    y, m2 = aug.augment(jax.random.key(0), x, m, cfg)
    self.assertIs(y, x)
    self.assertIs(m2, m)
    # Masks with a zero width (or count) are off too.
    self.assertFalse(aug.AugmentConfig(time_masks=3, freq_mask_width=4).active)

  def test_operations_at_unit_parameters_are_exact_identities(self):
    x, m = batch(jnp.float64)
    y, m2 = jax.vmap(lambda k, a, b: aug.time_stretch(k, a, b, 0.0))(jax.random.split(jax.random.key(0), 4), x, m)
    np.testing.assert_array_equal(y, x)
    np.testing.assert_array_equal(m2, m)
    y = aug.band_warp(jax.random.key(0), x[0], 0.0, 0.0, num_blocks=3)
    np.testing.assert_allclose(y, x[0], rtol=0, atol=1e-12)
    np.testing.assert_allclose(aug.vtlp_positions(1.0, 12), np.arange(12), atol=1e-6)

  def test_time_stretch_changes_the_length_within_range(self):
    x, m = batch(t=60)
    m = m.at[:, 40:].set(0)
    x = x * m[..., None]
    cfg = aug.AugmentConfig(time_stretch=0.25)
    lengths = []
    for seed in range(10):
      _, m2 = aug.augment(jax.random.key(seed), x, m, cfg)
      lengths.append(np.asarray(m2.sum(1)) / np.asarray(m.sum(1)))
    lengths = np.concatenate(lengths)
    self.assertGreaterEqual(lengths.min(), 0.75 - 0.15)  # rounding of short sequences
    self.assertLessEqual(lengths.max(), 1.25 + 0.15)
    self.assertGreater(lengths.max() - lengths.min(), 0.1)

  def test_time_stretch_interpolates_a_ramp(self):
    """A linear ramp over the valid frames stays a ramp from the first to the last value."""
    t = 20
    x = jnp.broadcast_to(jnp.arange(t, dtype=jnp.float32)[:, None], (t, 2))
    m = jnp.ones((t,))
    stretched = jax.jit(jax.vmap(lambda k: aug.time_stretch(k, x, m, 0.3)))(jax.random.split(jax.random.key(5), 4))
    lengths = set()
    for y, m2 in zip(*stretched):
      n = int(m2.sum())
      lengths.add(n)
      # Frame i reads position i * t / n, clamped to the last valid frame.
      np.testing.assert_allclose(y[:n, 0], np.minimum(np.arange(n) * t / n, t - 1), atol=1e-4)
      self.assertTrue(np.all(np.asarray(y[n:]) == 0))
    self.assertGreater(len(lengths), 1)

  def test_band_ops_act_on_every_block_alike(self):
    x, m = batch(f=3 * 8)
    cfg = aug.AugmentConfig(band_warp=0.2, band_shift=1.5, freq_masks=2, freq_mask_width=3, num_blocks=3)
    y, _ = aug.augment(jax.random.key(4), x, m, cfg)
    # Same blocks in, same blocks out: feed a batch whose three blocks are equal.
    same = jnp.tile(x[..., :8], (1, 1, 3))
    z, _ = aug.augment(jax.random.key(4), same, m, cfg)
    np.testing.assert_array_equal(z[..., :8], z[..., 8:16])
    np.testing.assert_array_equal(z[..., :8], z[..., 16:])
    self.assertEqual(y.shape, x.shape)

  def test_time_masks_zero_valid_frames_only(self):
    x, m = batch()
    x = x + m[..., None]  # no exact zeros on valid frames
    x = x * m[..., None]
    cfg = aug.AugmentConfig(time_masks=1, time_mask_width=4)
    y, m2 = aug.augment(jax.random.key(7), x, m, cfg)
    np.testing.assert_array_equal(m2, m)
    zero_rows = np.all(np.asarray(y) == 0, axis=2) & (np.asarray(m) > 0)
    self.assertTrue(np.all(zero_rows.sum(1) <= 4))
    self.assertGreater(zero_rows.sum(), 0)

  def test_jit_and_vmap_over_seeds(self):
    # Training only ever runs it jitted and vmapped over seeds, while the other tests check it
    # eagerly: the jitted program must compute what they checked.
    x, m = batch()
    fn = jax.jit(lambda k, a, b: aug.augment(k, a, b, ALL))
    eager = aug.augment(jax.random.key(9), x, m, ALL)
    jitted = fn(jax.random.key(9), x, m)
    np.testing.assert_allclose(jitted[0], eager[0], rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(jitted[1], eager[1])
    keys = jax.random.split(jax.random.key(9), 3)
    xs, ms = jnp.stack([x] * 3), jnp.stack([m] * 3)
    vmapped = jax.jit(jax.vmap(lambda k, a, b: aug.augment(k, a, b, ALL)))(keys, xs, ms)
    for s in range(3):
      one = fn(keys[s], x, m)
      np.testing.assert_allclose(vmapped[0][s], one[0], rtol=1e-5, atol=1e-5)
      np.testing.assert_array_equal(vmapped[1][s], one[1])
    self.assertFalse(np.array_equal(vmapped[0][0], vmapped[0][1]))

  def test_config_validation_names_the_field(self):
    data = ml_collections.ConfigDict({"deltas": 2, "augment": {"time_stretch": 0.1, "noise_std": 0.0}})
    cfg = aug.from_config(data)
    self.assertEqual((cfg.time_stretch, cfg.num_blocks), (0.1, 3))
    self.assertFalse(aug.from_config(ml_collections.ConfigDict({"deltas": 0})).active)
    data.augment.time_stretch = 1.0
    with self.assertRaisesRegex(ValueError, r"config\.data\.augment\.time_stretch must be"):
      aug.from_config(data)
    data.augment.time_stretch = 0.1
    data.augment.time_masks = -1
    with self.assertRaisesRegex(ValueError, r"config\.data\.augment\.time_masks must be an int >= 0"):
      aug.from_config(data)
    bad = ml_collections.ConfigDict({"augment": {"speed": 0.1}})
    with self.assertRaisesRegex(ValueError, r"config\.data\.augment: unknown field\(s\) \['speed'\]"):
      aug.from_config(bad)


if __name__ == "__main__":
  absltest.main()
