"""Tests run on the CPU in float64 unless a test asks for float32.

XLA's persistent compilation cache is on for the suite: many tests build the same small programs
(one tiny config through several trainers), and with the cache each is compiled once per machine.
``RHEL_JAX_TEST_CACHE`` names its folder (default: ``rhel_jax_xla_cache`` in the temp folder; ``off``
disables it). Results do not depend on it: a hit loads the executable XLA would have built.
"""
import os
import tempfile

os.environ.setdefault("JAX_PLATFORMS", "cpu")

_CACHE = os.environ.get("RHEL_JAX_TEST_CACHE", os.path.join(tempfile.gettempdir(), "rhel_jax_xla_cache"))
if _CACHE != "off":
  # Set as environment variables (read by JAX at import), so that the tests' subprocesses
  # (experiments.main, the 4-device sharding run) share the cache too.
  os.environ.update({
      "JAX_COMPILATION_CACHE_DIR": _CACHE,
      "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
      "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "-1",
      # A size bound turns on JAX's LRU eviction, which takes a file lock around every read and
      # write, so the pytest-xdist workers never read an entry another one is still writing.
      "JAX_COMPILATION_CACHE_MAX_SIZE": str(1 << 30),
  })

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)
