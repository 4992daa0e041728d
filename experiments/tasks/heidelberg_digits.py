"""Heidelberg Digits (or any corpus in its layout) as a task: classification of log-mel sequences
from the readout's logits pooled over time (``config.task.pooling``: averaged by default). The data
side (TFDS build, features) is ``data/`` and ``experiments/hd_data.py``.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections

from data import augment as hd_augment
from experiments import hd_data
from experiments.schema import FRACTION, Field, OneOf
from experiments.tasks.base import Task, register
from rhel_jax import losses


@register
class HeidelbergDigits(Task):
  """The padded splits live on the device; each epoch is a permutation of the training set drawn
  from the seed's data key, so batches are exact epochs and reproducible. All seeds share the
  official test split.
  """
  name = "heidelberg_digits"
  loss = "ce_mean"  # per instance: ce_<pooling>, with label smoothing if asked
  primary_metric = "accuracy"
  primary_description = ("20-way accuracy for Heidelberg Digits (10-way on a 10-class corpus such as the dev "
                         "variant's)")
  summary_metrics = ("accuracy",)
  fraction_metrics = ("accuracy",)
  # The paper reports one RHEL row; both of our estimators are compared against it.
  paper_table1 = {"bptt": "97.56 ± 0.62", "rhel": "97.61 ± 1.03", "rhel_centered": "97.61 ± 1.03",
                  "eprop": "94.95 ± 1.34", "tbptt": "90.27 ± 0.80"}
  config_fields = (
      Field("task.pooling", "mean", OneOf(*losses.POOLINGS), "one prediction per utterance from the per-step "
            "logits: 'mean', 'max', 'last' or 'lse' (valid steps only)", legacy="mean"),
      Field("task.label_smoothing", 0.0, FRACTION, "training targets put 1 - label_smoothing on the class, the "
            "rest spread evenly (0 = one-hot)"),
      *hd_data.FIELDS,
  )

  @classmethod
  def from_config(cls, config: ml_collections.ConfigDict, dtype) -> "HeidelbergDigits":
    arrays = hd_data.load(config.data)
    task = cls(arrays, batch_size=config.batch_size, probe_size=config.alignment_batch_size,
               steps_per_epoch=config.steps_per_epoch, n_out=hd_data.num_classes(config.data, arrays),
               eval_split=hd_data.eval_split(config.data), augment=hd_augment.from_config(config.data),
               pooling=config.task.pooling, label_smoothing=config.task.label_smoothing, dtype=dtype)
    task.source = hd_data.source_label(config.data)
    return task

  @classmethod
  def check_relations(cls, config: ml_collections.ConfigDict) -> None:
    hd_data.check_relations(config.data)

  def __init__(self, arrays, *, batch_size: int, probe_size: int, steps_per_epoch: int = 0, n_out: int = 20,
               eval_split: str = "test", augment: hd_augment.AugmentConfig = hd_augment.AugmentConfig(),
               pooling: str = "mean", label_smoothing: float = 0.0, dtype=jnp.float32):
    """``arrays``: {'train', 'test', ...} of ``hd_loader.HDArrays`` (inputs, labels, mask).

    ``eval_split``: the split evaluated as the test set ('validation' for probes, which must never
    read the test speakers). ``augment``: on-the-fly augmentation of training batches (off by default).
    ``pooling``: how the per-step logits become one prediction (``rhel_jax.losses.pooled_logits``);
    training uses the matching loss ``ce_<pooling>``, on labels smoothed by ``label_smoothing``
    (``rhel_jax.losses.classification_loss``); the reported loss is the plain ``ce_<pooling>``.
    """
    if pooling not in losses.POOLINGS:
      raise ValueError(f"config.task.pooling: unknown {pooling!r}; choose one of {list(losses.POOLINGS)}")
    self.pooling = pooling
    self.loss = losses.classification_loss(pooling, label_smoothing)  # what training minimises
    self.n_in, self.n_out = arrays["train"].inputs.shape[2], n_out
    self.dtype = dtype
    self.augment = augment
    as_device = lambda a: (jnp.asarray(a.inputs, dtype), jnp.asarray(a.labels), jnp.asarray(a.mask, dtype))
    self.train, self.test = as_device(arrays["train"]), as_device(arrays[eval_split])
    # The validation speaker(s) select an epoch, unless they already are what is evaluated.
    held_out = arrays.get("validation")
    self.validation = as_device(held_out) if eval_split == "test" and held_out is not None and len(held_out) else None
    self.num_train = len(arrays["train"])
    self.batch_size, self.probe_size = batch_size, probe_size
    for name, size in (("batch_size", self.batch_size), ("alignment_batch_size", self.probe_size)):
      if size > self.num_train:
        raise ValueError(f"config.{name}={size} exceeds the {self.num_train} training examples")
    self.steps_per_epoch = steps_per_epoch or self.num_train // self.batch_size
    self.sizes = {split: len(a) for split, a in arrays.items()}
    self.speakers = {split: a.speakers for split, a in arrays.items()}  # (n,) per split, for breakdowns
    self.eval_split = eval_split
    self.seq_len = arrays["train"].inputs.shape[1]

  def _take(self, data, idx):
    return tuple(x[idx] for x in data)

  def train_data(self):
    return self.train

  def train_batch(self, data, key, step, seq_len=None):
    del seq_len  # utterances keep their length
    epoch, i = step // self.steps_per_epoch, step % self.steps_per_epoch
    order = jax.random.permutation(jax.random.fold_in(key, epoch), self.num_train)
    inputs, labels, mask = self._take(data, jax.lax.dynamic_slice(order, (i * self.batch_size,), (self.batch_size,)))
    aug_key = jax.random.fold_in(jax.random.fold_in(key, step), 1)  # apart from the permutation's keys
    inputs, mask = hd_augment.augment(aug_key, inputs, mask, self.augment)
    return inputs, labels, mask

  def test_set(self, key):
    del key  # the official test split, the same for every seed
    return self.test

  def validation_set(self, key):
    del key
    return self.validation

  def probe_batch(self, key):
    return self._take(self.train, jax.random.choice(key, self.num_train, (self.probe_size,), replace=False))

  def metrics(self, ys, labels, mask):
    logits = losses.pooled_logits(ys, mask, self.pooling)
    return {"accuracy": jnp.mean(jnp.argmax(logits, -1) == labels),
            "loss": losses.LOSSES[f"ce_{self.pooling}"](ys, labels, mask)}
