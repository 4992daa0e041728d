"""Runs one experiment from an ml-collections config.

    python -m experiments.main --config=experiments/copy_paste.py:quick
    python -m experiments.main --config=experiments/copy_paste.py --config.seed=3 --workdir=runs/cp3

Several processes (``jax.distributed``; one per host, or per GPU): start the same command in each,
with ``--coordinator_address=HOST:PORT --num_processes=P --process_id=I`` (or
``--config.distributed=True`` on a cluster JAX detects, such as SLURM). The seeds are sharded over
every process's devices, Orbax writes each process's shards of a checkpoint, and process 0 writes
the reports. The workdir must be on a filesystem every process sees. See BUILD.md.
"""
import shlex
import sys

from absl import app, flags, logging
from ml_collections import config_flags

from experiments import checkpoints
from experiments.config_check import validate_config
from experiments.sharding import initialize_distributed, is_primary
from experiments.train import Interrupted, run_experiment

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file (path[:variant]).",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Output directory; default runs/<config.name>. "
                               "Re-running with the same workdir resumes.")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Delete a run with a different config in --workdir.")
_COORDINATOR = flags.DEFINE_string("coordinator_address", None,
                                   "jax.distributed: HOST:PORT of process 0's coordinator service.")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "jax.distributed: how many processes run.",
                                      lower_bound=1)
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "jax.distributed: this process's index, 0 to "
                                   "num_processes - 1.", lower_bound=0)
_RECIPES = flags.DEFINE_bool("recipes", True, "Train each method at its own recipe (config.recipes); "
                             "--norecipes trains every method at the shared one (config.train, config.method).")
flags.mark_flags_as_required(["config"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  config = _CONFIG.value
  settings = (_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
  if any(v is not None for v in settings):
    if any(v is None for v in settings):
      raise app.UsageError("--coordinator_address, --num_processes and --process_id go together")
    initialize_distributed(*settings)
  elif config.distributed is True:
    initialize_distributed()  # from the cluster's environment
  # One log and one report per run: the other processes log warnings and errors only.
  logging.set_verbosity(logging.INFO if is_primary() else logging.WARNING)
  if not _RECIPES.value:
    with config.unlocked():
      config.recipes = type(config.recipes)()
  try:
    validate_config(config)
  except ValueError as e:  # a bad value is the user's to fix: the message that names it, no traceback
    sys.exit(f"--config: {e}")
  workdir = _WORKDIR.value or f"runs/{config.name}"
  try:
    run_experiment(config, workdir, overwrite=_OVERWRITE.value,
                   command=shlex.join(["python", "-m", "experiments.main", *sys.argv[1:]]))
  except Interrupted as e:
    logging.warning("%s", e)
    sys.exit(128 + e.signum)
  finally:
    checkpoints.wait_until_finished()  # a checkpoint still being written completes before the exit


if __name__ == "__main__":
  app.run(main)
