"""Tasks as the trainer sees them, behind one interface and one registry.

A task is a :class:`Task` subclass in its own module, registered with :func:`register`; the
trainer, the config checks and the report read everything task-specific from it (loss, metric
names, the primary metric, config validation). A new task is one module plus one registry entry
(``tests/test_experiments.py`` registers a tiny synthetic one).

Batches are ``(inputs (B, T, n_in), targets, mask (B, T))``. ``train_batch``, ``test_set``,
``probe_batch`` and ``metrics`` are pure and jittable (``seq_len`` static), so the trainer vmaps
them over seeds. Arrays a task samples from (a dataset's training split) come from
:meth:`Task.train_data` and are passed to ``train_batch`` as an argument, not closed over, so the
jitted epoch takes them as an input instead of baking them into the program.
"""
from experiments.tasks.base import TASKS, Task, build_task, get, register, unregister  # noqa: F401

# The built-in tasks register themselves on import.
from experiments.tasks import copy_paste, heidelberg_digits  # noqa: E402,F401
