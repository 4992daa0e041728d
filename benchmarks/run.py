"""Train-step time and peak memory of every method versus sequence length T and width N.

    python -m benchmarks.run --quick                    # under a minute: T in {100, 400}, N = 64
    python -m benchmarks.run --out docs/results/cost/methods   # T in {100, 400, 1000, 4000}, N in {64, 128, 256}
    python -m benchmarks.run --unrolls 1,4,16 --lengths 1000 --widths 64 --no-memory   # scan unroll

Batch 64, float32, Copy-Paste-shaped data (4 inputs, 3 outputs, BCE). A *train step* is the
gradient plus an Adam update, jitted together. Times are medians of ``--repeats`` runs after a
warm-up, with the methods interleaved round-robin so that ratios compare like with like; peak
memory is measured per configuration in a fresh process (``VmHWM``, plus XLA's temp buffers).
Also times the forward phase against a bare ``lax.scan`` of the same leapfrog step.
``--unrolls`` times every method at each scan unroll (``ModelConfig.unroll``: every scan of every
method takes the same one); the report's main table is at the common unroll (``--unroll``, default
the backend's, ``rhel_jax.model.DEFAULT_UNROLL``), and a second table gives each method at its best.
``<method>+pallas`` rows run the RHEL phases as the fused Pallas kernels (``kernel='pallas'``;
``rhel_jax.pallas_phases``), and ``forward:pallas`` times the fused forward kernel next to
``forward``; they need a GPU and are skipped elsewhere, with the reason printed (Pallas's
interpreter, the only way to run them on a CPU, says nothing about their speed).
``stack:<method>`` rows train a user-style model instead (``examples.stacked_rnn``: encoder, two
``rhel_jax.nn.HamiltonianRNN`` layers of width N, MLP head) with ``jax.value_and_grad``, batch 8.
Each measurement is one JSON line on stdout (``method``, ``T``, ``N``, ``unroll``, ``step_ms``, ``load_avg``,
``peak_mb``, ``xla_temp_mb``; the memory fields are null where memory was not measured: ``forward``,
``bare_scan``, ``--no-memory``, and in ``--quick`` all but bptt and rhel at the longest T);
``--out`` also gets ``bench.jsonl``, ``bench.md`` and ``bench.png`` (log-log).

Each run is timed by the wall clock (``step_ms``) and by the process's CPU time (``cpu_ms``, all its
threads). On a machine that other jobs load, the wall clock also counts the time the step waits for
a core, and a method that spreads over two cores (XLA:CPU runs independent kernels of a step on
separate threads: BPTT's backward pass has several) gains on the wall clock only while a second
core is free; the CPU time counts the work itself, so its ratios hold under load.
``--against REV`` also times every method at git revision REV (checked out into a temporary
``git worktree``; its ``rhel_jax``, ``experiments`` and ``examples`` are imported in place of this
tree's while its steps are built and compiled) in the same interleaved rounds, as
``<method>@<rev>`` rows: before/after ratios from one run, under one load.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import pathlib
import subprocess
import sys
import tempfile
import time

METHODS = ("bptt", "rhel", "rhel_centered", "tbptt", "eprop", "rhel+exact", "rhel_centered+exact",
           "rhel+pallas", "rhel_centered+pallas", "rhel+exact+pallas", "rhel_centered+exact+pallas",
           "stack:bptt", "stack:rhel", "stack:rhel_centered")
BATCH, N_IN, N_OUT = 64, 4, 3
# The stack's own activations (each layer's (T, batch, N) output, which the layer above and the
# head need in any method) grow with T; a small batch keeps them below the process's baseline, so
# what the backward pass itself keeps shows.
STACK_BATCH = 8


def _problem(steps: int, n: int):
  import jax
  import rhel_jax
  from experiments.tasks.copy_paste import CopyTask
  task = CopyTask(seq_len=steps)
  inputs, targets, mask = task.sample(jax.random.key(1), BATCH)
  params = rhel_jax.init_params(jax.random.key(0), N_IN, n, N_OUT, w_scale=0.3, in_scale=0.3)
  return params, rhel_jax.ModelConfig(dt=0.5), inputs, targets, jax.numpy.broadcast_to(mask, (BATCH, steps))


def make_train_step(method: str, model):
  """jit(params, opt_state, batch) -> (params, opt_state, loss): gradient + Adam.

  ``<method>+exact`` runs the method in exact-reversible mode (integer-grid phases);
  ``<method>+pallas`` (also ``+exact+pallas``) runs its phases as the fused Pallas kernels.
  """
  import dataclasses
  import jax
  import optax
  from rhel_jax.methods import METHODS as REGISTRY
  from rhel_jax.losses import bce
  method, *variants = method.split("+")
  if "exact" in variants:
    model = dataclasses.replace(model, exact_reversible=True)
  spec = REGISTRY[method]
  options = {"eps": 1e-3} if "eps" in spec.option_names else {}
  if "pallas" in variants:
    options["kernel"] = "pallas"
  grad_fn = spec.bind(model, bce, **options)
  optimizer = optax.adam(1e-3)

  @jax.jit
  def step(params, opt_state, inputs, targets, mask):
    loss, grads = grad_fn(params, inputs, targets, mask)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss
  return step, optimizer


def make_stack_step(method: str, steps: int, n: int, unroll=None):
  """``run()`` of one jitted train step (jax.value_and_grad + Adam) of a user-style model:
  Linear encoder -> two ``rhel_jax.nn.HamiltonianRNN`` layers of width n -> MLP head, BCE on
  Copy-Paste data; ``stack:<method>`` sets the layers' method. Also returns the jitted step and
  its arguments (for memory analysis)."""
  import jax
  import jax.numpy as jnp
  import optax
  from flax import nnx
  from examples.stacked_rnn import StackedModel
  from experiments.tasks.copy_paste import CopyTask
  from rhel_jax.losses import bce
  task = CopyTask(seq_len=steps)
  inputs, targets, mask = task.sample(jax.random.key(1), STACK_BATCH)
  mask = jnp.broadcast_to(mask, (STACK_BATCH, steps))
  graphdef, state = nnx.split(StackedModel(task.n_in, task.n_out, n, method.split(":")[1], unroll=unroll,
                                           rngs=nnx.Rngs(0)))
  optimizer = optax.adam(1e-3)
  opt_state = optimizer.init(state)

  @jax.jit
  def step(state, opt_state, inputs, targets, mask):
    loss, grads = jax.value_and_grad(lambda s: bce(nnx.merge(graphdef, s)(inputs), targets, mask))(state)
    updates, opt_state = optimizer.update(grads, opt_state, state)
    return optax.apply_updates(state, updates), opt_state, loss
  args = (state, opt_state, inputs, targets, mask)
  return (lambda: step(*args)), step, args


def _batch(method: str) -> int:
  return STACK_BATCH if method.startswith("stack:") else BATCH


def _block(x):
  import jax
  return jax.block_until_ready(x)


# Top-level packages of this repository that a train step imports: swapped for another revision's.
REPO_PACKAGES = ("rhel_jax", "experiments", "examples")


@contextlib.contextmanager
def revision_modules(tree: pathlib.Path):
  """Imports ``rhel_jax``, ``experiments`` and ``examples`` from ``tree`` (another checkout) inside
  the block, and restores this tree's modules after it. Functions built inside keep the other
  revision's module globals, so steps compiled inside run that revision's code afterwards."""
  ours = lambda name: name.split(".")[0] in REPO_PACKAGES
  saved = {name: sys.modules.pop(name) for name in list(sys.modules) if ours(name)}
  sys.path.insert(0, str(tree))
  try:
    yield
  finally:
    sys.path.remove(str(tree))
    for name in [name for name in sys.modules if ours(name)]:
      del sys.modules[name]
    sys.modules.update(saved)


@contextlib.contextmanager
def revision_tree(rev: str):
  """``(short hash, path)`` of a temporary detached ``git worktree`` of ``rev``, removed afterwards."""
  root = pathlib.Path(__file__).resolve().parent.parent
  git = lambda *a: subprocess.run(["git", "-C", str(root), *a], check=True, capture_output=True, text=True).stdout.strip()
  sha = git("rev-parse", "--short", f"{rev}^{{commit}}")
  path = pathlib.Path(tempfile.mkdtemp(prefix=f"bench_{sha}_")) / "tree"
  git("worktree", "add", "--detach", str(path), sha)
  try:
    yield sha, path
  finally:
    git("worktree", "remove", "--force", str(path))


def _runners(steps: int, n: int, methods, unrolls, suffix: str = "") -> dict:
  """``{(name, unroll): run}`` of the train steps (and, without ``suffix``, the forward phase and a
  bare scan), built with whatever ``rhel_jax`` is imported now."""
  import dataclasses
  import jax
  import jax.numpy as jnp
  from jax import lax
  from rhel_jax.integrator import forward_phase, leapfrog_step, zero_state
  params, base_model, inputs, targets, mask = _problem(steps, n)
  inputs_tm = jnp.swapaxes(inputs, 0, 1)
  runners = {}
  for unroll in unrolls:
    model = dataclasses.replace(base_model, unroll=unroll)
    for method in methods:
      if method.startswith("stack:"):
        runners[method + suffix, unroll] = make_stack_step(method, steps, n, unroll)[0]
        continue
      step, optimizer = make_train_step(method, model)
      opt_state = optimizer.init(params)
      runners[method + suffix, unroll] = (lambda step=step, opt_state=opt_state:
                                          step(params, opt_state, inputs, targets, mask))
    if suffix:
      continue
    fwd = jax.jit(lambda p, x, model=model: forward_phase(p, model, x)[1])
    bare = jax.jit(lambda p, x, model=model: lax.scan(lambda s, u: (leapfrog_step(p, model, s, u)[0], None),
                                                      zero_state(BATCH, n, x.dtype), x,
                                                      unroll=model.scan_unroll())[0])
    runners["forward", unroll] = lambda fwd=fwd: fwd(params, inputs_tm)
    runners["bare_scan", unroll] = lambda bare=bare: bare(params, inputs_tm)
    # The kernel runs its own loop (no scan, so no unroll): timed once, at the common unroll's turn.
    if unroll == unrolls[0] and any(m.endswith("+pallas") for m in methods):
      from rhel_jax import pallas_phases
      fused = jax.jit(lambda p, x, model=model: pallas_phases.forward_phase(p, model, x)[1])
      runners["forward:pallas", unroll] = lambda fused=fused: fused(params, inputs_tm)
  return runners


def _warm_up(runners: dict, steps: int, n: int, failed: dict) -> None:
  """Compiles and runs each runner twice; drops (and records in ``failed``) those that raise."""
  for key, run in list(runners.items()):
    try:
      _block(run())
      _block(run())
    except Exception as e:  # noqa: BLE001 -- reported, and the other methods still run (a GPU check's budget)
      failed[key] = f"{type(e).__name__}: {str(e).strip().splitlines()[0][:300] if str(e).strip() else ''}"
      print(f"benchmarks.run: {key[0]} at T={steps} N={n} unroll={key[1]} failed to run: {failed[key]}",
            file=sys.stderr, flush=True)
      del runners[key]


def time_configuration(steps: int, n: int, methods, repeats: int, unrolls=(None,), against=None) -> list[dict]:
  """Median train-step time (wall clock and CPU) of each method at (T, N) and each unroll, all
  interleaved; plus the forward phase and a bare scan. ``unrolls``: values of ``ModelConfig.unroll``
  (None: the backend's). ``against``: ``(short hash, tree)`` of another revision whose methods are
  timed in the same rounds, as ``<method>@<hash>``."""
  import numpy as np
  from rhel_jax.model import ModelConfig
  failed = {}
  runners = _runners(steps, n, methods, unrolls)
  _warm_up(runners, steps, n, failed)
  if against is not None:
    sha, tree = against
    with revision_modules(tree):
      others = _runners(steps, n, [m for m in methods if "+pallas" not in m], unrolls, suffix=f"@{sha}")
      _warm_up(others, steps, n, failed)  # compiled here, with the other revision's modules imported
    runners.update(others)
  samples = {name: [] for name in runners}
  cpu = {name: [] for name in runners}
  for _ in range(repeats):
    for name, run in runners.items():
      start, start_cpu = time.perf_counter(), time.process_time()
      _block(run())
      samples[name].append(time.perf_counter() - start)
      cpu[name].append(time.process_time() - start_cpu)
  row = lambda name, unroll: {"method": name, "T": steps, "N": n, "unroll": ModelConfig(unroll=unroll).scan_unroll(),
                              "batch": _batch(name.split("@")[0]),
                              **({"revision": name.split("@")[1], "against": True} if "@" in name else {})}
  return ([{**row(name, unroll), "step_ms": 1e3 * float(np.median(s)), "cpu_ms": 1e3 * float(np.median(cpu[name, unroll])),
            "runs": len(s)} for (name, unroll), s in samples.items()]
          + [{**row(name, unroll), "step_ms": None, "runs": 0, "error": error} for (name, unroll), error in failed.items()])


def load_average() -> list[float]:
  """The machine's load average over 1, 5 and 15 minutes (other jobs share the cores: ratios within
  one run stay comparable, absolute times less so)."""
  import os
  return [round(x, 2) for x in os.getloadavg()]


def peak_rss_mb() -> float:
  """This process's peak resident memory (``VmHWM``), in MiB."""
  with open("/proc/self/status") as f:
    return next(int(line.split()[1]) for line in f if line.startswith("VmHWM")) / 1024


def memory_child(method: str, steps: int, n: int, unroll=None) -> dict:
  """Runs one train step of ``method`` in this (fresh) process; returns peak memory figures."""
  import dataclasses
  import jax
  if method.startswith("stack:"):
    _, step, args = make_stack_step(method, steps, n, unroll)
  else:
    params, model, inputs, targets, mask = _problem(steps, n)
    step, optimizer = make_train_step(method, dataclasses.replace(model, unroll=unroll))
    args = (params, optimizer.init(params), inputs, targets, mask)
  compiled = step.lower(*args).compile()
  stats = compiled.memory_analysis()
  jax.block_until_ready(compiled(*args))
  return {"method": method, "T": steps, "N": n, "batch": _batch(method), "peak_mb": peak_rss_mb(),
          "xla_temp_mb": stats.temp_size_in_bytes / 2**20}


def measure_memory(method: str, steps: int, n: int, unroll=None) -> dict:
  out = subprocess.run([sys.executable, "-m", "benchmarks.run", "--memory-child", method, str(steps), str(n),
                        str(unroll)], capture_output=True, text=True)
  if out.returncode:
    raise RuntimeError(f"memory measurement of {method} T={steps} N={n} failed:\n{out.stderr[-2000:]}")
  return json.loads(out.stdout.strip().splitlines()[-1])


def _reference(key: tuple) -> tuple:
  """The bptt row a row's ratio is taken against: like with like (stack rows against stack:bptt, a
  revision's rows against that revision's bptt)."""
  method, steps, n = key
  name, _, rev = method.partition("@")
  return (("stack:bptt" if name.startswith("stack:") else "bptt") + (f"@{rev}" if rev else ""), steps, n)


def write_report(rows: list[dict], out: pathlib.Path) -> None:
  from rhel_jax.methods import nudged
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  from experiments import checkpoints
  checkpoints.write_jsonl(out / "bench.jsonl", rows)
  # The main table is at the common unroll (rows written before unrolls were timed are all common).
  common = [r for r in rows if r.get("common_unroll", True) and r["step_ms"] is not None]
  times = {(r["method"], r["T"], r["N"]): r["step_ms"] for r in common}
  cpu_times = {(r["method"], r["T"], r["N"]): r["cpu_ms"] for r in common if r.get("cpu_ms") is not None}
  mems = {(r["method"], r["T"], r["N"]): r for r in common if r["peak_mb"] is not None}
  by_unroll = {}
  for r in rows:
    if r["step_ms"] is not None:
      by_unroll.setdefault((r["method"], r["T"], r["N"]), {})[r.get("unroll")] = r["step_ms"]
  revisions = sorted({r.get("revision", "not recorded") for r in rows if not r.get("against")})
  against = sorted({r["revision"] for r in rows if r.get("against")})
  commands = sorted({r["command"] for r in rows if "command" in r})
  loads = [r["load_avg"] for r in rows if "load_avg" in r]
  load = (f"Load average (1, 5, 15 min) of the machine while measuring: {loads[0]} at the first configuration, "
          f"{loads[-1]} at the last" if loads else "Load average: not recorded")
  lines = [f"Command: `{c}`" for c in commands] + [f"Git revision: `{', '.join(revisions)}`", "", load, "",
           f"Scan unroll: {', '.join(sorted({str(r.get('unroll', 'not recorded')) for r in common}))}", ""]
  if against:
    lines += [f"`<method>@<rev>` rows: the same method at git revision {', '.join(f'`{a}`' for a in against)}, "
              "timed in the same interleaved rounds (`--against`).", ""]
  lines += ["Step: median wall clock; CPU: median CPU time of the process (all threads), which other jobs on the "
            "machine barely move (the module docstring says why both).", "",
            "| method | T | N | step (ms) | ratio to bptt | CPU (ms) | CPU ratio to bptt | peak RSS (MB) | XLA temp (MB) |",
            "|---|---|---|---|---|---|---|---|---|"]
  ratio = lambda table, key: (f"{table[key] / table[_reference(key)]:.2f}"
                              if key in table and _reference(key) in table else "-")
  for (method, steps, n), ms in sorted(times.items(), key=lambda kv: (kv[0][2], kv[0][1], kv[0][0])):
    key = (method, steps, n)
    mem = mems.get(key, {})
    peak = f"{mem['peak_mb']:.0f} | {mem['xla_temp_mb']:.1f}" if mem else "- | -"
    cpu = f"{cpu_times[key]:.1f}" if key in cpu_times else "-"
    lines.append(f"| {method} | {steps} | {n} | {ms:.1f} | {ratio(times, key)} | {cpu} | {ratio(cpu_times, key)} | {peak} |")
  for rev in against:
    lines += ["", f"This tree against `{rev}` (ratio to bptt of the same revision; `now / then`: this tree's step "
              "over the other's, by CPU time):", "",
              f"| method | T | N | ratio to bptt | at {rev} | CPU ratio to bptt | at {rev} | CPU now / then |",
              "|---|---|---|---|---|---|---|---|"]
    for (method, steps, n) in sorted(times, key=lambda k: (k[2], k[1], k[0])):
      then = (f"{method}@{rev}", steps, n)
      if "@" in method or then not in times:
        continue
      now_then = (f"{cpu_times[method, steps, n] / cpu_times[then]:.2f}"
                  if (method, steps, n) in cpu_times and then in cpu_times else "-")
      lines.append(f"| {method} | {steps} | {n} | {ratio(times, (method, steps, n))} | {ratio(times, then)} | "
                   f"{ratio(cpu_times, (method, steps, n))} | {ratio(cpu_times, then)} | {now_then} |")
  unrolls = sorted({u for per in by_unroll.values() for u in per if u is not None})
  if len(unrolls) > 1:
    lines += ["", "Each method at every scan unroll (`ModelConfig.unroll`); the ratio to bptt at each one's best:", "",
              "| method | T | N | " + " | ".join(f"unroll {u} (ms)" for u in unrolls)
              + " | best unroll | ratio to bptt, both at their best |", "|---|---|---|" + "---|" * (len(unrolls) + 2)]
    best = {key: min(per, key=per.get) for key, per in by_unroll.items()}
    for (method, steps, n), per in sorted(by_unroll.items(), key=lambda kv: (kv[0][2], kv[0][1], kv[0][0])):
      base = by_unroll.get(("stack:bptt" if method.startswith("stack:") else "bptt", steps, n))
      ratio = (f"{per[best[method, steps, n]] / min(base.values()):.2f}" if base else "-")
      lines.append(f"| {method} | {steps} | {n} | " + " | ".join(f"{per[u]:.1f}" if u in per else "-" for u in unrolls)
                   + f" | {best[method, steps, n]} | {ratio} |")
  pairs = [(m, m + "+exact") for m in nudged()]
  configs = sorted({(n, steps) for _, steps, n in times})
  fused = [(m, m + "+pallas") for m in nudged()] + [(m + "+exact", m + "+exact+pallas") for m in nudged()]
  if any((f, steps, n) in times for _, f in fused for n, steps in configs):
    lines += ["", "The fused Pallas kernels (train step, kernel / lax.scan):", "",
              "| N | T | " + " | ".join(f"{f} / {m}" for m, f in fused) + " |", "|---|---|" + "---|" * len(fused)]
    for n, steps in configs:
      lines.append(f"| {n} | {steps} | " + " | ".join(
          f"{times[f, steps, n] / times[m, steps, n]:.2f}" if (f, steps, n) in times and (m, steps, n) in times
          else "-" for m, f in fused) + " |")
    phases = [p for p in ("bare_scan", "forward", "forward:pallas") if any(k[0] == p for k in times)]
    lines += ["", "Forward phase per time step (us; batch 64):", "",
              "| N | T | " + " | ".join(phases) + " |", "|---|---|" + "---|" * len(phases)]
    for n, steps in configs:
      lines.append(f"| {n} | {steps} | " + " | ".join(
          f"{1e3 * times[p, steps, n] / steps:.2f}" if (p, steps, n) in times else "-" for p in phases) + " |")
  if any((exact, steps, n) in times for _, exact in pairs for n, steps in configs):
    lines += ["", "Cost of the exact-reversible mode (train step, exact / floating point):", "",
              "| N | T | " + " | ".join(f"{e} / {m}" for m, e in pairs) + " |", "|---|---|" + "---|" * len(pairs)]
    for n, steps in configs:
      lines.append(f"| {n} | {steps} | " + " | ".join(
          f"{times[e, steps, n] / times[m, steps, n]:.2f}" if (e, steps, n) in times and (m, steps, n) in times
          else "-" for m, e in pairs) + " |")
  failures = [r for r in rows if r["step_ms"] is None]
  if failures:
    lines += ["", "Failed to run (compile or first call):", ""]
    lines += [f"* {r['method']} at T={r['T']}, N={r['N']}: {r.get('error', 'no reason recorded')}" for r in failures]
  lengths = sorted({steps for _, steps, _ in mems})
  if len(lengths) > 1:
    lo, hi = lengths[0], lengths[-1]
    lines += ["", f"Peak memory growth from T={lo} to T={hi}:", "",
              f"| method | N | peak RSS T={lo} (MB) | peak RSS T={hi} (MB) | growth | XLA temp T={lo} / T={hi} (MB) |",
              "|---|---|---|---|---|---|"]
    for method, n in sorted({(m, w) for m, _, w in mems}):
      if (method, lo, n) in mems and (method, hi, n) in mems:
        a, b = mems[method, lo, n], mems[method, hi, n]
        lines.append(f"| {method} | {n} | {a['peak_mb']:.0f} | {b['peak_mb']:.0f} | "
                     f"{100 * (b['peak_mb'] / a['peak_mb'] - 1):+.0f} % | {a['xla_temp_mb']:.1f} / {b['xla_temp_mb']:.1f} |")
  checkpoints.atomic_write_text(out / "bench.md", "\n".join(lines) + "\n")
  widths = sorted({n for _, _, n in times})
  fig, axes = plt.subplots(2, len(widths), figsize=(4 * len(widths), 6.5), squeeze=False)
  for col, n in enumerate(widths):
    for method in METHODS:
      ts = sorted(t for m, t, w in times if m == method and w == n)
      if ts:
        axes[0, col].loglog(ts, [times[method, t, n] for t in ts], "o-", label=method)
      ms = sorted(t for m, t, w in mems if m == method and w == n)
      if ms:
        axes[1, col].loglog(ms, [mems[method, t, n]["peak_mb"] for t in ms], "o-", label=method)
    axes[0, col].set_title(f"N={n}, batch {BATCH}, float32")
    axes[0, col].set_ylabel("train step (ms)")
    axes[1, col].set_ylabel("peak RSS (MB)")
    axes[1, col].set_xlabel("T")
    for ax in axes[:, col]:
      ax.grid(alpha=0.3, which="both")
    axes[0, col].legend(fontsize=7)
  fig.tight_layout()
  checkpoints.atomic_savefig(fig, out / "bench.png", dpi=100)
  plt.close(fig)


def main():
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--quick", action="store_true")
  parser.add_argument("--out", type=pathlib.Path)
  parser.add_argument("--repeats", type=int, default=5)
  parser.add_argument("--methods", default=",".join(METHODS[:5]),
                      help=f"comma-separated, from {list(METHODS)}")
  parser.add_argument("--no-memory", action="store_true")
  parser.add_argument("--lengths", help="comma-separated T values (default: 100,400,1000,4000; --quick 100,400)")
  parser.add_argument("--widths", help="comma-separated N values (default: 64,128,256; --quick 64)")
  parser.add_argument("--report-only", action="store_true",
                      help="rewrite bench.md and bench.png in --out from its bench.jsonl (no measuring)")
  parser.add_argument("--unrolls", help="comma-separated scan unrolls to time every method at (ModelConfig.unroll; "
                      "default: the common one only)")
  parser.add_argument("--unroll", type=int, help="the common unroll of the main table and of the memory "
                      "measurements (default: the backend's, rhel_jax.model.DEFAULT_UNROLL)")
  parser.add_argument("--against", metavar="REV", help="also time every method at git revision REV in the same "
                      "rounds (rows '<method>@<rev>'; scan methods only)")
  parser.add_argument("--memory-child", nargs=4, help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.report_only:
    if not args.out or not (args.out / "bench.jsonl").is_file():
      parser.error("--report-only needs --out DIR holding bench.jsonl")
    from experiments import checkpoints
    write_report(checkpoints.read_jsonl(args.out / "bench.jsonl"), args.out)
    return
  if args.memory_child:
    method, steps, n, unroll = args.memory_child
    print(json.dumps(memory_child(method, int(steps), int(n), None if unroll == "None" else int(unroll))))
    return
  methods = tuple(m for m in args.methods.split(",") if m)
  unknown = set(methods) - set(METHODS)
  if unknown:
    parser.error(f"--methods: unknown {sorted(unknown)}; choose from {list(METHODS)}")
  fused = [m for m in methods if m.endswith("+pallas")]
  if fused:
    import jax
    if jax.default_backend() != "gpu":
      print(f"benchmarks.run: skipping {fused}: the fused Pallas kernels compile for a GPU only, and this backend "
            f"is {jax.default_backend()!r} (their interpreter's speed means nothing)", file=sys.stderr)
      methods = tuple(m for m in methods if m not in fused)
  lengths, widths = ((100, 400), (64,)) if args.quick else ((100, 400, 1000, 4000), (64, 128, 256))
  if args.lengths:
    lengths = tuple(int(v) for v in args.lengths.split(","))
  if args.widths:
    widths = tuple(int(v) for v in args.widths.split(","))
  from experiments.workdir import git_revision as _git_revision
  stamp = {"revision": _git_revision(), "command": " ".join(["python -m benchmarks.run"] + sys.argv[1:])}
  from rhel_jax.model import ModelConfig
  try:
    extra = [int(u) for u in (args.unrolls or "").split(",") if u]
    common = ModelConfig(unroll=args.unroll).scan_unroll()
    for u in extra:
      ModelConfig(unroll=u)
  except ValueError as e:
    parser.error(f"--unroll / --unrolls: {e}")
  unrolls = tuple(dict.fromkeys([common] + extra))
  rows = []
  with contextlib.ExitStack() as stack:
    against = stack.enter_context(revision_tree(args.against)) if args.against else None
    for n in widths:
      for steps in lengths:
        rows += _measure(steps, n, methods, args, unrolls, common, stamp, against, lengths[-1])
  if args.out:
    write_report(rows, args.out)


def _measure(steps, n, methods, args, unrolls, common, stamp, against, longest) -> list[dict]:
  """The rows of one (T, N): times, and peak memory where it is measured; each printed as it comes."""
  timed = time_configuration(steps, n, methods, args.repeats, unrolls, against)
  # --quick keeps under a minute: memory of the reference pair at the longest T only.
  measured = (() if args.no_memory else
              ("bptt", "rhel") if args.quick and steps == longest else () if args.quick else methods)
  failed = {row["method"] for row in timed if row["step_ms"] is None}
  memory = {method: measure_memory(method, steps, n, args.unroll) for method in measured if method not in failed}
  rows = []
  for row in timed:  # one line per measurement: time, and peak memory where it was taken
    is_common = row["unroll"] == common
    mem = memory.get(row["method"], {}) if is_common else {}
    # An --against row keeps its own revision.
    row = {**row, "common_unroll": is_common, "peak_mb": mem.get("peak_mb"), "xla_temp_mb": mem.get("xla_temp_mb"),
           "load_avg": load_average(), **stamp, **({"revision": row["revision"]} if row.get("against") else {})}
    rows.append(row)
    print(json.dumps(row), flush=True)
  return rows


if __name__ == "__main__":
  main()
