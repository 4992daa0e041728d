"""The committed reports regenerate from the committed runs with the commands docs/results.md quotes:
Table 1 and Figure 1's numbers for both tasks, and the held-out-speaker table. Guards the report code
(it must read tasks through their interface and give the same tables) and the curated paths."""
import json
import pathlib
import re
import sys

import pytest

from experiments import report
from studies.hd_speakers import rotation_table

ROOT = pathlib.Path(__file__).resolve().parents[1]
RESULTS = "docs/results"
TABLE1 = {
    "table1_copy_paste": ["runs/a", "runs/b", "runs/c", "runs/d"],
    "table1_heidelberg_digits": ["runs/dev_a", "runs/dev_b", "runs/hard_a", "runs/hard_b"],
}
HELD_OUT = f"{RESULTS}/hd_held_out_speakers"
ROTATION_ROWS = [
    f"Hamiltonian, dev config={HELD_OUT}/hamiltonian_bptt",
    f"Hamiltonian, dev config={HELD_OUT}/hamiltonian_rhel",
    f"GRU, dev recipe={HELD_OUT}/gru",
    f"GRU, the issue's CMVN recipe={HELD_OUT}/gru_cmvn",
    f"Hamiltonian, third protocol's config (trim only)={HELD_OUT}/third_protocol/hamiltonian_bptt",
    f"GRU, third protocol's recipe={HELD_OUT}/third_protocol/gru",
]


@pytest.mark.parametrize("entry", sorted(TABLE1))
def test_table1_regenerates_from_its_runs(entry, monkeypatch):
  monkeypatch.chdir(ROOT)  # the tables name the workdirs by the paths given
  folder = pathlib.Path(RESULTS) / entry
  runs = report.merge_runs([report.load_run(folder / w) for w in TABLE1[entry]])
  markdown, table_csv = report.table1(runs)
  assert markdown == (folder / "table1.md").read_text()
  assert table_csv == (folder / "table1.csv").read_bytes().decode()  # csv writes \r\n
  assert report.alignment_by_tensor(runs) == (folder / "alignment_by_tensor.md").read_text()
  committed = (folder / "figure1.md").read_text()
  for run in runs:
    for method, by_epoch in report.alignment_summary(run).items():
      for epoch, (mean, sem, n) in by_epoch.items():
        assert f"| {run['label']} | {method} | {epoch} | {mean:.6f} | {sem:.1e} | {n} |" in committed


def test_the_paper_column_is_keyed_by_method():
  markdown = (ROOT / RESULTS / "table1_copy_paste/table1.md").read_text()
  # Both RHEL estimators sit beside the paper's one RHEL row; readout has no paper entry.
  assert "| rhel | 99.71 ± 0.07 | 99.36 ± 0.02 |" in markdown
  assert "| rhel_centered | 99.72 ± 0.06 | 99.36 ± 0.02 |" in markdown
  assert "| readout | 81.88 ± 2.93 | - |" in markdown


def test_rotation_table_regenerates_from_its_rotations(tmp_path, monkeypatch, capsys):
  monkeypatch.chdir(ROOT)
  argv = ["rotation_table", *(a for row in ROTATION_ROWS for a in ("--row", row)), "--out", str(tmp_path)]
  monkeypatch.setattr(sys, "argv", argv)
  rotation_table.main()
  capsys.readouterr()
  revision = re.compile(r"\(revision `[^`]*`\)")
  got = revision.sub("(revision)", (tmp_path / "rotation_table.md").read_text())
  assert got == revision.sub("(revision)", (ROOT / HELD_OUT / "rotation_table.md").read_text())
  rows = [json.loads(line) for line in (tmp_path / "rotation_table.jsonl").read_text().splitlines()]
  assert rows == [json.loads(line) for line in (ROOT / HELD_OUT / "rotation_table.jsonl").read_text().splitlines()]
