"""On-the-fly augmentation of padded feature batches, in JAX: pure, jittable, vmappable.

    cfg = AugmentConfig(time_stretch=0.1, band_warp=0.1, time_masks=2, time_mask_width=10, noise_std=0.1)
    inputs, mask = augment(jax.random.fold_in(key, step), inputs, mask, cfg)

A batch is ``inputs (B, T, F)`` with ``mask (B, T)`` (1 on valid steps, which come first; padded
steps hold zeros). ``F = num_blocks * n_bands``: the static bands, then each order of deltas
(``HDConfig.deltas``); band operations act on every block alike. The output has the input's shapes
and dtypes, keeps padded steps at zero, and depends only on the key: the same key gives the same
batch, on any device and under ``jit`` / ``vmap``. Every example draws its own parameters. A
strength of 0 switches an operation off; with all of them off, ``augment`` returns its inputs.

The operations, applied in this order:

- time stretch (speed perturbation on the features): each utterance's valid frames are resampled
  by linear interpolation to ``round(L * r)`` frames, ``r ~ U[1 - time_stretch, 1 + time_stretch]``;
  the mask follows; frames beyond ``T`` are cropped.
- band warp / shift (VTLP-like, on the band axis): output band ``f`` reads band ``w(f) + s`` by
  linear interpolation, where ``w`` is VTLP's piecewise-linear warp with factor
  ``a ~ U[1 - band_warp, 1 + band_warp]`` (boundary at 80 % of the axis) and
  ``s ~ U[-band_shift, band_shift]`` bands; reads past either edge take the edge band.
- SpecAugment masks: ``time_masks`` spans of ``U{0..time_mask_width}`` valid frames and
  ``freq_masks`` spans of ``U{0..freq_mask_width}`` bands set to 0 (the training mean, as the
  features are standardised).
- additive Gaussian noise of std ``noise_std`` on the valid frames.
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

# Key tags: one stream per operation, so switching one on leaves the others' draws unchanged.
_STRETCH, _WARP, _TIME_MASK, _FREQ_MASK, _NOISE = range(5)
FIELDS = ("time_stretch", "band_shift", "band_warp", "time_masks", "time_mask_width", "freq_masks",
          "freq_mask_width", "noise_std")


@dataclasses.dataclass(frozen=True)
class AugmentConfig:
  """Strengths (all 0 = off) and the feature layout. Hashable, so it can be a static argument."""
  time_stretch: float = 0.0   # max relative change of the length, in [0, 1)
  band_shift: float = 0.0     # max shift in bands
  band_warp: float = 0.0      # max relative VTLP warp, in [0, 1)
  time_masks: int = 0         # number of time masks per example
  time_mask_width: int = 0    # max frames per time mask
  freq_masks: int = 0         # number of band masks per example
  freq_mask_width: int = 0    # max bands per band mask
  noise_std: float = 0.0      # std of the additive noise (in standardised units)
  num_blocks: int = 1         # feature blocks of n_bands each: 1 + HDConfig.deltas

  def __post_init__(self):
    for name in ("time_stretch", "band_warp"):
      value = getattr(self, name)
      if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise ValueError(f"augment.{name} must be a number in [0, 1), got {value!r}")
    for name in ("band_shift", "noise_std"):
      value = getattr(self, name)
      if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < float("inf"):
        raise ValueError(f"augment.{name} must be a finite number >= 0, got {value!r}")
    for name in ("time_masks", "time_mask_width", "freq_masks", "freq_mask_width"):
      value = getattr(self, name)
      if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"augment.{name} must be an int >= 0, got {value!r}")
    if isinstance(self.num_blocks, bool) or not isinstance(self.num_blocks, int) or self.num_blocks < 1:
      raise ValueError(f"augment.num_blocks must be an int >= 1, got {self.num_blocks!r}")

  @property
  def active(self) -> bool:
    """Whether any operation is on."""
    return bool(self.time_stretch or self.band_shift or self.band_warp or self.noise_std
                or (self.time_masks and self.time_mask_width) or (self.freq_masks and self.freq_mask_width))


def from_config(data) -> AugmentConfig:
  """The ``AugmentConfig`` of a ``config.data`` (its ``augment`` sub-dict; absent = all off).

  Errors name the field, as ``config.data.augment.<field>``.
  """
  sub = data.get("augment", None)
  sub = {} if sub is None else sub
  unknown = set(sub.keys()) - set(FIELDS)
  if unknown:
    raise ValueError(f"config.data.augment: unknown field(s) {sorted(unknown)}; known: {list(FIELDS)}")
  try:
    return AugmentConfig(**{k: sub[k] for k in FIELDS if k in sub}, num_blocks=1 + int(data.get("deltas", 0)))
  except ValueError as e:
    raise ValueError(str(e).replace("augment.", "config.data.augment.", 1)) from None


def _lerp(x, pos, axis_len, axis):
  """Reads ``x`` at fractional positions ``pos`` along ``axis`` (clamped to [0, axis_len - 1])."""
  pos = jnp.clip(pos, 0, axis_len - 1)
  lo = jnp.floor(pos)
  w = (pos - lo).astype(x.dtype)
  lo = lo.astype(jnp.int32)
  hi = jnp.minimum(lo + 1, axis_len - 1)
  a, b = jnp.take(x, lo, axis=axis), jnp.take(x, hi, axis=axis)
  shape = [1] * x.ndim
  shape[axis] = -1
  w = w.reshape(shape)
  return a + w * (b - a)


def time_stretch(key, x, m, max_rel: float):
  """One example: ``x (T, F)``, ``m (T,)`` -> the valid frames resampled to ``round(L * r)`` frames,
  ``r ~ U[1 - max_rel, 1 + max_rel]``, cropped to ``T``; returns ``(x', m')`` of the same shapes."""
  steps = x.shape[0]
  length = jnp.sum(m > 0)
  r = jax.random.uniform(key, (), jnp.float32, 1 - max_rel, 1 + max_rel)
  new_length = jnp.clip(jnp.round(length * r), 1, steps).astype(jnp.int32)
  new_length = jnp.where(length > 0, new_length, 0)
  t = jnp.arange(steps, dtype=jnp.int32)
  # Output frame t reads input position t * L / L', split exactly in integers (a float division can
  # land just below an integer, which would blur an unstretched sequence).
  num, den = t * length.astype(jnp.int32), jnp.maximum(new_length, 1)
  lo = jnp.clip(num // den, 0, jnp.maximum(length - 1, 0))
  hi = jnp.minimum(lo + 1, jnp.maximum(length - 1, 0))
  w = jnp.where(num // den < length - 1, (num % den) / den, 0.0).astype(x.dtype)[:, None]
  new_m = (t < new_length).astype(m.dtype)
  a, b = jnp.take(x, lo, axis=0), jnp.take(x, hi, axis=0)
  out = a + w * (b - a)
  return out * new_m[:, None], new_m


def vtlp_positions(alpha, n_bands: int, boundary: float = 0.8):
  """Source band (fractional) of each of ``n_bands`` output bands under VTLP's piecewise-linear warp
  with factor ``alpha``: ``f * alpha`` below ``boundary * top * min(alpha, 1) / alpha``, then a line
  to ``top`` (``top = n_bands - 1``), so both ends of the axis stay fixed."""
  top = n_bands - 1
  f = jnp.arange(n_bands, dtype=jnp.float32)
  knee = boundary * top * jnp.minimum(alpha, 1.0) / alpha
  upper = top - (top - boundary * top * jnp.minimum(alpha, 1.0)) / (top - knee) * (top - f)
  return jnp.where(f <= knee, f * alpha, upper)


def band_warp(key, x, max_warp: float, max_shift: float, num_blocks: int):
  """One example: ``x (T, F)``, ``F = num_blocks * n_bands`` -> every block's bands read at
  ``vtlp(f, a) + s`` (``a ~ U[1 - max_warp, 1 + max_warp]``, ``s ~ U[-max_shift, max_shift]``)."""
  k_a, k_s = jax.random.split(key)
  steps, features = x.shape
  n_bands = features // num_blocks
  alpha = jax.random.uniform(k_a, (), jnp.float32, 1 - max_warp, 1 + max_warp)
  shift = jax.random.uniform(k_s, (), jnp.float32, -max_shift, max_shift)
  pos = vtlp_positions(alpha, n_bands) + shift
  blocks = x.reshape(steps, num_blocks, n_bands)
  return _lerp(blocks, pos, n_bands, 2).reshape(steps, features)


def _spans(key, count: int, max_width: int, extent):
  """``count`` random spans ``[start, start + width)`` with ``width ~ U{0..max_width}`` inside
  ``[0, extent)`` (a traced int); returns the ``(count,)`` int arrays ``start`` and ``width``."""
  k_w, k_s = jax.random.split(key)
  width = jax.random.randint(k_w, (count,), 0, max_width + 1)
  width = jnp.minimum(width, extent)
  start = jnp.floor(jax.random.uniform(k_s, (count,)) * (extent - width + 1)).astype(jnp.int32)
  return start, width


def time_masks(key, x, m, count: int, max_width: int):
  """One example: zeroes ``count`` spans of up to ``max_width`` frames inside the valid frames of
  ``x (T, F)`` (``m (T,)`` unchanged)."""
  start, width = _spans(key, count, max_width, jnp.sum(m > 0).astype(jnp.int32))
  t = jnp.arange(x.shape[0])[:, None]
  hit = jnp.any((t >= start) & (t < start + width), axis=1)
  return jnp.where(hit[:, None], jnp.zeros_like(x), x)


def freq_masks(key, x, count: int, max_width: int, num_blocks: int):
  """One example: zeroes ``count`` spans of up to ``max_width`` bands of ``x (T, F)``, in every block."""
  steps, features = x.shape
  n_bands = features // num_blocks
  start, width = _spans(key, count, max_width, n_bands)
  f = jnp.arange(n_bands)[:, None]
  hit = jnp.any((f >= start) & (f < start + width), axis=1)
  return jnp.where(jnp.tile(hit, num_blocks)[None, :], jnp.zeros_like(x), x)


def _one(key, x, m, cfg: AugmentConfig):
  if cfg.time_stretch:
    x, m = time_stretch(jax.random.fold_in(key, _STRETCH), x, m, cfg.time_stretch)
  if cfg.band_warp or cfg.band_shift:
    x = band_warp(jax.random.fold_in(key, _WARP), x, cfg.band_warp, cfg.band_shift, cfg.num_blocks)
  if cfg.time_masks and cfg.time_mask_width:
    x = time_masks(jax.random.fold_in(key, _TIME_MASK), x, m, cfg.time_masks, cfg.time_mask_width)
  if cfg.freq_masks and cfg.freq_mask_width:
    x = freq_masks(jax.random.fold_in(key, _FREQ_MASK), x, cfg.freq_masks, cfg.freq_mask_width, cfg.num_blocks)
  if cfg.noise_std:
    x = x + cfg.noise_std * jax.random.normal(jax.random.fold_in(key, _NOISE), x.shape, x.dtype)
  return x * m[:, None].astype(x.dtype), m


def augment(key, inputs, mask, cfg: AugmentConfig):
  """Augments a batch: ``inputs (B, T, F)``, ``mask (B, T)`` -> ``(inputs', mask')``, same shapes and
  dtypes. Example ``b`` uses ``fold_in(key, b)``. ``cfg`` must be static (a Python value) under jit."""
  if not cfg.active:
    return inputs, mask
  if inputs.ndim != 3 or mask.shape != inputs.shape[:2]:
    raise ValueError(f"augment: want inputs (B, T, F) and mask (B, T), got {inputs.shape} and {mask.shape}")
  if inputs.shape[2] % cfg.num_blocks:
    raise ValueError(f"augment: {inputs.shape[2]} features do not split into {cfg.num_blocks} blocks")
  keys = jax.vmap(lambda b: jax.random.fold_in(key, b))(jnp.arange(inputs.shape[0]))
  out, new_mask = jax.vmap(lambda k, x, m: _one(k, x, m, cfg))(keys, inputs, mask)
  return out.astype(inputs.dtype), new_mask.astype(mask.dtype)
