"""The HD speaker study's helpers: ``--set FIELD=VALUE`` parsing and applying, and the rotation table."""
import argparse
import json

import pytest

from experiments import heidelberg_digits
from studies.hd_speakers import cli, rotation_table


def test_config_override_parses_literals_and_plain_strings():
  assert cli.config_override("data.cmvn=meanvar") == ("data.cmvn", "meanvar")
  assert cli.config_override("num_epochs=50") == ("num_epochs", 50)
  assert cli.config_override("methods=('bptt',)") == ("methods", ("bptt",))
  with pytest.raises(argparse.ArgumentTypeError, match="FIELD=VALUE"):
    cli.config_override("data.cmvn")


def test_apply_overrides_sets_nested_fields_and_names_bad_ones():
  config = heidelberg_digits.get_config("quick")
  cli.apply_overrides(config, [("data.cmvn", "mean"), ("data.augment.band_warp", 0), ("num_epochs", 3)])
  assert (config.data.cmvn, config.data.augment.band_warp, config.num_epochs) == ("mean", 0.0, 3)
  with pytest.raises(SystemExit, match="data has no field 'nope'"):
    cli.apply_overrides(config, [("data.nope", 1)])
  with pytest.raises(SystemExit, match="data.cmvn has no field 'x'"):
    cli.apply_overrides(config, [("data.cmvn.x", 1)])
  with pytest.raises(SystemExit, match="data.cmvn=3"):
    cli.apply_overrides(config, [("data.cmvn", 3)])


def _jsonl(path, rows):
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_rotation_table_reads_both_kinds_of_output(tmp_path):
  _jsonl(tmp_path / "ham" / "rotation.jsonl",
         [{"held_out": k, "method": "bptt", "seed": s, "accuracy": 0.5 + 0.1 * k + 0.01 * s}
          for k in (0, 1) for s in (0, 1)])
  for k in (0, 1):
    _jsonl(tmp_path / "gru" / f"held_out_{k:02d}" / "gru_protocol.jsonl",
           [{"seed": s, "held_out_accuracy": 0.7 - 0.1 * k, "test_accuracy": 0.0} for s in (0, 1, 2)])
  assert rotation_table.read_rotation(tmp_path / "ham") == {
      "bptt": {0: pytest.approx([0.5, 0.51]), 1: pytest.approx([0.6, 0.61])}}
  assert rotation_table.read_rotation(tmp_path / "gru") == {
      "": {0: pytest.approx([0.7] * 3), 1: pytest.approx([0.6] * 3)}}
  with pytest.raises(SystemExit, match="neither rotation.jsonl"):
    rotation_table.read_rotation(tmp_path)
  assert rotation_table.row_spec("GRU, a=b=dir") == ("GRU, a=b", rotation_table.pathlib.Path("dir"))


def test_percent_cells_give_mean_std_per_group_then_the_mean_of_means():
  assert cli.percent([0.5, 0.7]) == "60.00 ± 10.00"
  assert cli.percent_row([[0.5, 0.7], [0.8, 0.8, 0.8]]) == ["60.00 ± 10.00", "80.00 ± 0.00", "70.00"]
