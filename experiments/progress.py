"""Progress of a long run: elapsed time and ETA, and SIGINT/SIGTERM turned into a clean stop."""
from __future__ import annotations

import contextlib
import signal
import time


class Interrupted(Exception):
  """Raised after SIGINT/SIGTERM once the current epoch is checkpointed."""

  def __init__(self, signum: int):
    super().__init__(f"stopped by {signal.Signals(signum).name}; the last epoch is checkpointed, "
                     "re-run the same command to resume")
    self.signum = signum


class StopFlag:
  """Turns SIGINT/SIGTERM into a flag that the epoch loop checks (a jitted epoch is never cut)."""

  def __init__(self):
    self.signum = None

  @contextlib.contextmanager
  def installed(self):
    def handler(signum, frame):
      del frame
      self.signum = signum
    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
      yield self
    finally:
      for s, h in previous.items():
        signal.signal(s, h)


def fmt_time(seconds: float) -> str:
  seconds = int(round(seconds))
  return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m{seconds % 60:02d}s" if seconds >= 3600 else \
      f"{seconds // 60}m{seconds % 60:02d}s"


class Progress:
  """Elapsed time and ETA over all (method, epoch) units of the run."""

  def __init__(self, total_units: int):
    self.total, self.done, self.start, self.measured, self.measured_time = total_units, 0, time.time(), 0, 0.0

  def update(self, units_done_now: int, seconds: float):
    self.done += units_done_now
    self.measured += units_done_now
    self.measured_time += seconds

  def skip(self, units: int):
    self.done += units

  def eta(self) -> str:
    if not self.measured:
      return "?"
    return fmt_time(self.measured_time / self.measured * (self.total - self.done))

  def elapsed(self) -> str:
    return fmt_time(time.time() - self.start)
