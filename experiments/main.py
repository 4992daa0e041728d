"""Runs one experiment from an ml-collections config.

    python -m experiments.main --config=experiments/copy_paste.py:quick
    python -m experiments.main --config=experiments/copy_paste.py --config.seed=3 --workdir=runs/cp3
"""
import shlex
import sys

from absl import app, flags, logging
from ml_collections import config_flags

from experiments.config_check import validate_config
from experiments.train import Interrupted, run_experiment

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file (path[:variant]).",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Output directory; default runs/<config.name>. "
                               "Re-running with the same workdir resumes.")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Delete a run with a different config in --workdir.")
_RECIPES = flags.DEFINE_bool("recipes", True, "Train each method at its own recipe (config.recipes); "
                             "--norecipes trains every method at the shared one (config.train, config.method).")
flags.mark_flags_as_required(["config"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  logging.set_verbosity(logging.INFO)
  config = _CONFIG.value
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


if __name__ == "__main__":
  app.run(main)
