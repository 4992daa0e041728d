"""A multi-process run (``jax.distributed``): 2 CPU processes on localhost with 2 devices each give
the same metrics and checkpoints, bit for bit, as 1 process with 4 devices (seeds and sweep
settings sharded over the devices of both).

The processes talk through JAX's coordinator service on a free loopback port and exchange data
with gloo, JAX's CPU collectives. Each is an ``experiments.main`` subprocess, killed if the test
fails or times out.
"""
import os
import pathlib
import signal
import socket
import subprocess
import sys
import tempfile
import time

from absl.testing import absltest

from tools import reproduce

ROOT = pathlib.Path(__file__).parents[1]
METHOD = "rhel_centered"
# 2 seeds x 2 sweep settings: 4 replicas, one per device.
FLAGS = ["--config=experiments/copy_paste.py:tiny", "--config.num_seeds=2", "--config.sweep={'train.lr': (3e-3, 1e-3)}",
         f"--config.methods=('{METHOD}',)", "--config.num_epochs=2", "--config.alignment_epochs=()"]


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


class MultiProcessTest(absltest.TestCase):

  def start(self, name: str, devices: int, workdir: pathlib.Path, *extra: str) -> None:
    xla = f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={devices}".strip()
    env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS=xla)
    logs = {stream: open(self.tmp / f"{len(self.procs)}.{stream}", "w+") for stream in ("out", "err")}
    for f in logs.values():
      self.addCleanup(f.close)
    proc = subprocess.Popen([sys.executable, "-m", "experiments.main", *FLAGS, f"--workdir={workdir}", *extra],
                            cwd=ROOT, env=env, stdout=logs["out"], stderr=logs["err"])
    self.addCleanup(lambda: proc.poll() is None and proc.kill())
    self.procs[name] = proc, logs

  def finish_all(self, timeout_s: float = 300) -> dict[str, tuple[str, str]]:
    """Waits for every process; on the first failure (or the timeout) kills the others, which would
    otherwise wait for their peer at the next collective."""
    deadline = time.monotonic() + timeout_s
    while any(proc.poll() is None for proc, _ in self.procs.values()):
      failed = [name for name, (proc, _) in self.procs.items() if proc.poll() not in (None, 0)]
      if failed or time.monotonic() > deadline:
        for proc, _ in self.procs.values():
          if proc.poll() is None:
            proc.kill()
        break
      time.sleep(0.2)
    outputs = {}
    for name, (proc, logs) in self.procs.items():
      proc.wait()
      for f in logs.values():
        f.seek(0)
      outputs[name] = logs["out"].read(), logs["err"].read()
    codes = {name: proc.returncode for name, (proc, _) in self.procs.items()}
    if any(codes.values()):  # the log of a process that failed by itself, not of those killed here
      culprits = [name for name, code in codes.items() if code not in (0, -signal.SIGKILL)] or list(codes)
      self.fail(f"exit codes {codes}\n" + "\n".join(f"--- {n}:\n{outputs[n][1][-3000:]}" for n in culprits))
    return outputs

  def test_two_processes_equal_one_process_with_as_many_devices(self):
    tmp = tempfile.TemporaryDirectory()
    self.addCleanup(tmp.cleanup)
    self.tmp, self.procs = pathlib.Path(tmp.name), {}
    single, multi = self.tmp / "single", self.tmp / "multi"
    coordinator = f"127.0.0.1:{free_port()}"
    self.start("1 process x 4 devices", 4, single)
    for i in range(2):
      self.start(f"process {i} of 2", 2, multi, f"--coordinator_address={coordinator}", "--num_processes=2",
                 f"--process_id={i}")
    outputs = self.finish_all()

    # Every result file and checkpoint is the same, bit for bit (checkpoints array by array).
    rows, differences = reproduce.compare_runs(single, multi)
    self.assertEqual(differences, 0, rows)
    self.assertIn((f"{METHOD}/checkpoint_2", "identical arrays (17)"), rows)
    for setting in ("lr=0.003", "lr=0.001"):
      self.assertIn((f"settings/{setting}/{METHOD}/metrics.jsonl", "identical (4 rows)"), rows)
    # The seeds really were split: each process wrote its own shards of the checkpoint.
    item = multi / METHOD / "checkpoint_2" / "default"
    self.assertTrue((item / "ocdbt.process_0").is_dir() and (item / "ocdbt.process_1").is_dir())
    self.assertIn("2 seeds x 1 methods x 2 settings on 4 cpu device(s)", outputs["process 0 of 2"][1])
    # Reports and the log come from process 0 alone.
    self.assertIn(f"| {METHOD} |", outputs["process 0 of 2"][0])
    self.assertNotIn(f"| {METHOD} |", outputs["process 1 of 2"][0])
    self.assertIn(f"[{METHOD}] epoch 2/2", outputs["process 0 of 2"][1])
    self.assertNotIn(f"[{METHOD}] epoch", outputs["process 1 of 2"][1])


if __name__ == "__main__":
  absltest.main()
