"""The HD benchmarks' command-line helpers: ``--set FIELD=VALUE`` parsing and applying."""
import argparse

import pytest

from benchmarks import hd_cli
from experiments import heidelberg_digits


def test_config_override_parses_literals_and_plain_strings():
  assert hd_cli.config_override("data.cmvn=meanvar") == ("data.cmvn", "meanvar")
  assert hd_cli.config_override("num_epochs=50") == ("num_epochs", 50)
  assert hd_cli.config_override("methods=('bptt',)") == ("methods", ("bptt",))
  with pytest.raises(argparse.ArgumentTypeError, match="FIELD=VALUE"):
    hd_cli.config_override("data.cmvn")


def test_apply_overrides_sets_nested_fields_and_names_bad_ones():
  config = heidelberg_digits.get_config("quick")
  hd_cli.apply_overrides(config, [("data.cmvn", "mean"), ("data.augment.band_warp", 0), ("num_epochs", 3)])
  assert (config.data.cmvn, config.data.augment.band_warp, config.num_epochs) == ("mean", 0.0, 3)
  with pytest.raises(SystemExit, match="data has no field 'nope'"):
    hd_cli.apply_overrides(config, [("data.nope", 1)])
  with pytest.raises(SystemExit, match="data.cmvn has no field 'x'"):
    hd_cli.apply_overrides(config, [("data.cmvn.x", 1)])
  with pytest.raises(SystemExit, match="data.cmvn=3"):
    hd_cli.apply_overrides(config, [("data.cmvn", 3)])
