"""The task interface and registry (see the package docstring)."""
from __future__ import annotations

from typing import Any, Callable, ClassVar

import ml_collections

from experiments.schema import check

Array = Any


class Task:
  """The interface. Class attributes describe the task; instances hold its shapes and data.

  Class attributes:
    name: ``config.task.name``.
    loss: a name from ``rhel_jax.LOSSES`` or a callable ``fn(ys, targets, mask) -> scalar`` (what
      training minimises; an instance may set its own, e.g. from its config).
    primary_metric: the metric Table 1 reports (a key of :meth:`metrics`).
    primary_description: what Table 1's cells of the task measure, for its caption
      (e.g. "per-bit recall accuracy for Copy-Paste").
    summary_metrics: the metrics ``results.md`` shows, primary first.
    fraction_metrics: those of ``summary_metrics`` shown as percentages.
    paper_table1: the seed paper's Table 1 entry for the task, by method name (for the report).
    per_step_metric: a metric of :meth:`metrics` with one value per step of a window, shape
      ``(window,)`` (e.g. the recall accuracy at each step), tabulated in ``results.md`` and the
      report; None when there is none.
    per_step_caption: what that table shows (lower case; a sentence without its final colon).
    per_step_prefix: its column headings, ``<prefix>1``, ``<prefix>2``, ...
    chance_level, target_level: the primary metric at chance and a level worth marking (plots of
      its curves start just below the first and draw a line at the second); None when not fixed.
    config_fields: the task's own config fields (``task.*``, and ``data.*`` for a dataset), each an
      ``experiments.schema.Field`` with its default, check and legacy value; the config of the task is
      built from them and the shared fields (``experiments.base_config.get_config``), and each is
      checked before any compute. ``config.task.name`` is declared for every task.
  Instance attributes (set by ``from_config``): ``n_in``, ``n_out``, ``seq_len`` (the test
  length), ``steps_per_epoch``, ``sizes`` (split sizes, or None), ``source`` (what made the data,
  for ``results.md``, or None).
  """
  name: ClassVar[str]
  loss: str | Callable[[Array, Array, Array], Array]
  primary_metric: ClassVar[str]
  primary_description: ClassVar[str] = ""
  summary_metrics: ClassVar[tuple[str, ...]]
  fraction_metrics: ClassVar[tuple[str, ...]] = ()
  paper_table1: ClassVar[dict[str, str]] = {}
  per_step_metric: ClassVar[str | None] = None
  per_step_caption: ClassVar[str] = "value at each step"
  per_step_prefix: ClassVar[str] = "s"
  chance_level: ClassVar[float | None] = None
  target_level: ClassVar[float | None] = None
  config_fields: ClassVar[tuple] = ()
  sizes = None
  source = None

  @classmethod
  def validate_config(cls, config: ml_collections.ConfigDict) -> None:
    """The task's share of the config checks: each field of ``config_fields`` (its declared check),
    then :meth:`check_relations`. Raises ValueError naming the field (``config.task.seq_len``)."""
    check(config, cls.config_fields, unknown_keys=False)  # keys no one declared: the whole config's check
    cls.check_relations(config)

  @classmethod
  def check_relations(cls, config: ml_collections.ConfigDict) -> None:
    """Checks that span fields (e.g. a length that must hold the others); errors name the fields."""

  @classmethod
  def from_config(cls, config: ml_collections.ConfigDict, dtype) -> "Task":
    raise NotImplementedError

  def train_data(self):
    """Arrays ``train_batch`` samples from (a pytree, or None for generated data)."""
    return None

  def train_seq_len(self, epoch: int) -> int:
    """Training length in ``epoch`` (a Python int, static under jit; a curriculum may vary it)."""
    del epoch
    return self.seq_len

  def train_batch(self, data, key: Array, step: Array, seq_len: int):
    """Training batch of optimizer step ``step`` (traced int) for one seed's data ``key``."""
    raise NotImplementedError

  def test_set(self, key: Array):
    raise NotImplementedError

  def validation_set(self, key: Array):
    """Held-out data evaluated every epoch to pick an epoch (best on validation), or None (default).

    When given, the trainer logs ``val_<metric>`` per epoch and ``final.json`` also holds the test
    metrics at each seed's best validation epoch (:func:`experiments.summary.best_on_validation`).
    """
    del key
    return None

  def probe_batch(self, key: Array):
    """The fixed batch on which gradients are compared with BPTT's (Figure 1)."""
    raise NotImplementedError

  def metrics(self, ys: Array, targets: Array, mask: Array) -> dict[str, Array]:
    """Scalar (or per-step) test metrics of readouts ``ys (B, T, n_out)``; includes ``loss``."""
    raise NotImplementedError



TASKS: dict[str, type[Task]] = {}


def register(task: type[Task], *, replace: bool = False) -> type[Task]:
  """Adds a :class:`Task` subclass under ``task.name``; usable as a class decorator."""
  if not (isinstance(task, type) and issubclass(task, Task)):
    raise TypeError(f"register: expected a Task subclass, got {task!r}")
  if task.name in TASKS and not replace:
    raise ValueError(f"register: a task named {task.name!r} is already registered")
  TASKS[task.name] = task
  return task


def unregister(name: str) -> None:
  TASKS.pop(name, None)


def get(name: str) -> type[Task]:
  if name not in TASKS:
    raise ValueError(f"config.task.name: unknown task {name!r}; known: {sorted(TASKS)}")
  return TASKS[name]


def build_task(config: ml_collections.ConfigDict, dtype) -> Task:
  return get(config.task.name).from_config(config, dtype)
