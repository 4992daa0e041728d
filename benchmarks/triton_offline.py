"""What the fused Pallas kernels ask of a GPU, found without one: shared memory, registers, spills.

    python -m benchmarks.triton_offline --widths 64,128,256 --methods rhel_centered

Lowers ``rhel`` / ``rhel_centered`` with ``kernel='pallas'`` for CUDA on this machine (as
``tests/test_pallas_phases.py`` does), then compiles each kernel's Triton module with the ``triton``
package for sm_90 (H100/H200) and prints one JSON line per kernel: the shared memory it asks for
(a block has 227 KiB) and ``ptxas``'s registers per thread and stack (spills). ``triton`` is not a
dependency of this project: install the GPU machine's version (``pip install triton==3.6.0`` for
the H200 image), preferably with its JAX version (0.11.2 there), since the Triton IR comes from
jaxlib. This is Triton's own compile pipeline, not XLA's, so the figures are estimates.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import pathlib
import subprocess
import tempfile
from unittest import mock


@contextlib.contextmanager
def cuda_lowering(capture: list | None = None):
  """Lets ``jit(...).trace(...).lower(lowering_platforms=('cuda',))`` lower the Pallas kernels on a
  machine without a GPU: the default backend reads as a GPU, and JAX >= 0.11 (which asks the device
  for its compute capability while lowering) is told it is an H200. With ``capture``, each Triton
  module's text is appended to it."""
  import jax
  from jax._src.pallas.triton import lowering
  with contextlib.ExitStack() as stack:
    stack.enter_context(mock.patch.object(jax, "default_backend", lambda: "gpu"))
    try:
      from jax._src.pallas.triton import gpu_info
      h200 = gpu_info.get_gpu_info_from_version(gpu_info.GpuVersion.H200)
      stack.enter_context(mock.patch.object(gpu_info, "get_gpu_info", lambda: h200))
    except (ImportError, AttributeError):  # JAX 0.10 asks nothing
      pass
    if capture is not None:
      original = lowering.lower_jaxpr_to_triton_module

      def lower(*args, **kwargs):
        result = original(*args, **kwargs)
        capture.append(result.module.operation.get_asm(enable_debug_info=False))
        return result
      stack.enter_context(mock.patch.object(lowering, "lower_jaxpr_to_triton_module", lower))
    yield


def kernel_modules(method: str, n: int, exact: bool, steps: int = 8, batch: int = 64) -> list[str]:
  """The Triton modules (text) of ``method``'s two kernels at width ``n``: ``[forward, echo]``."""
  import jax
  import jax.numpy as jnp
  import rhel_jax
  params = rhel_jax.init_params(jax.random.key(0), 4, n, 3)
  model = rhel_jax.ModelConfig(exact_reversible=exact)
  spec = rhel_jax.METHODS[method]
  fn = lambda p, x, y, m: spec.fn(p, model, x, y, m, rhel_jax.mse, eps=1e-3, kernel="pallas")
  f32 = jnp.float32
  args = (params, jnp.zeros((steps, batch, 4), f32), jnp.zeros((batch, steps, 3), f32), jnp.ones((batch, steps), f32))
  modules: list[str] = []
  with cuda_lowering(modules):
    jax.jit(fn).trace(*args).lower(lowering_platforms=("cuda",))
  return modules


def compile_sm90(module: str, num_warps: int) -> dict:
  """Compiles a Triton module for sm_90: ``{shared_bytes, registers, stack_bytes}``."""
  import triton
  from triton.backends.compiler import GPUTarget
  with tempfile.TemporaryDirectory() as tmp:
    path = pathlib.Path(tmp) / "kernel.ttir"
    path.write_text(module)
    compiled = triton.compile(str(path), target=GPUTarget("cuda", 90, 32),
                              options={"num_warps": num_warps, "num_stages": 1})
    cubin = pathlib.Path(tmp) / "kernel.cubin"
    cubin.write_bytes(compiled.asm["cubin"])
    tool = pathlib.Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "cuobjdump"
    usage = subprocess.run([str(tool), "--dump-resource-usage", str(cubin)], capture_output=True, text=True,
                           check=True).stdout
  fields = dict(item.split(":") for line in usage.splitlines() if "REG:" in line for item in line.split()
                if ":" in item and item.split(":")[1].isdigit())
  return {"shared_bytes": compiled.metadata.shared, "registers": int(fields.get("REG", -1)),
          "stack_bytes": int(fields.get("STACK", -1))}


def main():
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--widths", default="64,128,256", help="comma-separated N values")
  parser.add_argument("--methods", default="rhel,rhel_centered")
  parser.add_argument("--modes", default="float,exact", help="comma-separated: float, exact")
  args = parser.parse_args()
  import sys
  import jax
  import triton
  from rhel_jax import pallas_phases
  try:
    from experiments.workdir import git_revision
    revision = git_revision()
  except ImportError:  # a bare environment made for this tool (jax + triton, no flax)
    revision = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
  stamp = {"jax": jax.__version__, "triton": triton.__version__, "revision": revision or "unknown",
           "command": " ".join(["python -m benchmarks.triton_offline"] + sys.argv[1:])}
  for n in (int(v) for v in args.widths.split(",")):
    for method in args.methods.split(","):
      for mode in args.modes.split(","):
        row = {"method": method, "mode": mode, "N": n, **stamp}
        cap = pallas_phases.MAX_UNITS_COMPILED
        pallas_phases.MAX_UNITS_COMPILED = max(cap, n)  # measure past the limit, which this tool sets
        try:
          modules = kernel_modules(method, n, mode == "exact")
        finally:
          pallas_phases.MAX_UNITS_COMPILED = cap
        for phase, module in zip(("forward", "echo"), modules):
          try:
            result = compile_sm90(module, pallas_phases.NUM_WARPS)
          except Exception as e:  # noqa: BLE001 -- a kernel Triton cannot compile is a finding, not a crash
            result = {"error": f"{type(e).__name__}: {str(e).strip()[:300]}"}
          print(json.dumps({**row, "phase": phase, **result}), flush=True)


if __name__ == "__main__":
  main()
