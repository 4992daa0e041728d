"""Tests run on the CPU in float64 unless a test asks for float32.

XLA's persistent compilation cache is on for the suite: many tests build the same small programs
(one tiny config through several trainers), and with the cache each is compiled once per machine.
``RHEL_JAX_TEST_CACHE`` names its folder (default: ``rhel_jax_xla_cache`` in the temp folder; ``off``
disables it). Results do not depend on it: a hit loads the executable XLA would have built.

The suite is compile-bound (small programs, each built once), so the tests ask XLA's CPU backend
for cheap code generation: LLVM at -O0, without its expensive passes (the HLO optimisations still
run). Compiles get 1.6-3.5x faster here; round-off may differ in the last bits (FMA contraction),
never a program's meaning, and tests that compare two results compare programs built the same way.
``RHEL_JAX_TEST_FAST_COMPILE=0`` keeps XLA's defaults.
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
      # Not the op-by-op programs of eager code (thousands, each compiled in under 0.2 s): every
      # write takes the lock and lists the whole folder for its size check, which costs more than
      # the entry saves. test_losses + test_gradients on one core: 82 s cold / 45 s warm, against
      # 113 / 27 s caching every program.
      "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0.2",
      "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "-1",
      # A size bound turns on JAX's LRU eviction, which takes a file lock around every read and
      # write, so the pytest-xdist workers never read an entry another one is still writing.
      "JAX_COMPILATION_CACHE_MAX_SIZE": str(1 << 30),
  })

FAST_COMPILE_FLAGS = "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"
if os.environ.get("RHEL_JAX_TEST_FAST_COMPILE", "1") != "0":
  # In the environment, so the subprocesses compile the same way.
  os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {FAST_COMPILE_FLAGS}".strip()

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)
