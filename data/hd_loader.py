"""Heidelberg Digits splits as padded numpy arrays with masks, normalised with training statistics.

    arrays = load_splits(builder)                      # {'train', 'validation', 'test'} -> HDArrays
    for inputs, labels, mask in batches(arrays["train"], 32, seed=0, epoch=3): ...

Padding is to one common length (``max_frames``, or the longest sequence over all splits); longer
sequences are cropped and the crop is reported. Every band is standardised with the mean and std
of the *valid* training frames.
"""
from __future__ import annotations

import dataclasses
from typing import Iterator, Optional

import numpy as np
from absl import logging


@dataclasses.dataclass
class HDArrays:
  inputs: np.ndarray   # (n, T, n_mels) float32, zero on padded steps after normalisation
  mask: np.ndarray     # (n, T) float32, 1 on valid steps
  labels: np.ndarray   # (n,) int32, digit + 10 for German
  speakers: np.ndarray  # (n,) int32

  def __len__(self):
    return len(self.labels)


def _read(source) -> list[dict]:
  return [source[i] for i in range(len(source))]


def _pad(examples: list[dict], length: int, split: str) -> HDArrays:
  n_mels = examples[0]["mel"].shape[1] if examples else 0
  inputs = np.zeros((len(examples), length, n_mels), np.float32)
  mask = np.zeros((len(examples), length), np.float32)
  cropped = 0
  for i, e in enumerate(examples):
    frames = e["mel"][:length]
    cropped += e["mel"].shape[0] > length
    inputs[i, : len(frames)] = frames
    mask[i, : len(frames)] = 1.0
  if cropped:
    logging.warning("%s: %d of %d sequences cropped to %d frames", split, cropped, len(examples), length)
  return HDArrays(inputs, mask, np.array([e["label"] for e in examples], np.int32),
                  np.array([e["speaker"] for e in examples], np.int32))


def band_stats(train: HDArrays) -> tuple[np.ndarray, np.ndarray]:
  """Per-band mean and std over the valid training frames. Returns two (n_mels,) arrays."""
  valid = train.inputs[train.mask > 0]
  if not len(valid):
    raise ValueError("band_stats: the training split has no frames")
  return valid.mean(0), np.maximum(valid.std(0), 1e-6)


def normalize(arrays: HDArrays, mean: np.ndarray, std: np.ndarray) -> HDArrays:
  inputs = (arrays.inputs - mean) / std * arrays.mask[..., None]
  return dataclasses.replace(arrays, inputs=inputs.astype(np.float32))


def load_splits(builder, max_frames: Optional[int] = None, validation_speakers: tuple[int, ...] = ()
                ) -> dict[str, HDArrays]:
  """All splits of a prepared ``HeidelbergDigits`` builder, padded and normalised.

  ``validation_speakers``: training speakers moved into the ``validation`` split before the
  normalisation statistics are taken (one fold of a leave-one-speaker-out validation; the
  builder's own validation split is then expected to be empty).
  """
  sources = builder.as_data_source()
  examples = {split: _read(src) for split, src in sources.items()}
  if validation_speakers:
    known = sorted({int(e["speaker"]) for e in examples.get("train", [])})
    missing = sorted(set(validation_speakers) - set(known))
    if missing:
      raise ValueError(f"validation speaker(s) {missing} are not training speakers of {builder.data_dir} "
                       f"(those are {known})")
    held = [e for e in examples["train"] if int(e["speaker"]) in validation_speakers]
    examples["train"] = [e for e in examples["train"] if int(e["speaker"]) not in validation_speakers]
    examples["validation"] = list(examples.get("validation", [])) + held
  if not examples.get("train"):
    raise ValueError(f"{builder.data_dir}: the training split is empty")
  longest = max(e["mel"].shape[0] for split in examples.values() for e in split)
  length = min(longest, max_frames) if max_frames else longest
  padded = {split: _pad(ex, length, split) for split, ex in examples.items()}
  mean, std = band_stats(padded["train"])
  return {split: normalize(a, mean, std) for split, a in padded.items()}


def batches(arrays: HDArrays, batch_size: int, *, seed: int, epoch: int, drop_remainder: bool = True
            ) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
  """Shuffled batches ``(inputs, labels, mask)``; the order depends only on (seed, epoch)."""
  order = np.random.default_rng([seed, epoch]).permutation(len(arrays))
  stop = len(order) - len(order) % batch_size if drop_remainder else len(order)
  for start in range(0, stop, batch_size):
    idx = order[start:start + batch_size]
    yield arrays.inputs[idx], arrays.labels[idx], arrays.mask[idx]
