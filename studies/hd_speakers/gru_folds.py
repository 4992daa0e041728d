"""A GRU reference on the HD dev corpus's leave-one-speaker-out folds, with the dev recipe.

    RHEL_JAX_SHARED=/path/to/shared python -m studies.hd_speakers.gru_folds --out studies/hd_speakers/results/gru_folds

Is the folds' plateau (about 54 % for every setting tried) a limit of the Hamiltonian network or
of the data and recipe? This trains a standard gated RNN, flax's ``nnx.GRUCell`` (N hidden units,
then a linear readout at every step), through exactly the dev variant's pipeline: the same features
(log-mels + deltas, standardised on the fold's training speakers), the same batches and on-the-fly
augmentation (``HeidelbergDigits.train_batch``), the same max-pooled cross-entropy, optimizer,
schedule, epochs and seeds (root 1000, as the fold probes). Only the recurrent network differs.
Each fold holds one training speaker out (the test speaker 03 is never read). Writes
``gru_folds.md`` (final validation accuracy per fold, mean ± std over seeds, and the folds' mean)
and ``gru_folds.jsonl`` (one row per fold and seed).

``--network hamiltonian``: this paper's network instead, as a stack of ``rhel_jax.nn.HamiltonianRNN``
layers (``--hidden 64,64``: two layers of 64 units; ``alpha``, ``beta``, ``dt``, ``rho`` and the init
scales from the config's ``model``), trained by BPTT
with the same linear readout: does depth help the Hamiltonian network where the trainer's one-layer
model plateaus? Writes ``hamiltonian_folds.md`` / ``.jsonl``.

``--protocol``: the dev protocol itself instead (all three training speakers train, 5 seeds of root
0 as ``experiments.main``), scored on the test split and on its held-out speaker 03 alone, as the
Hamiltonian network's protocol is in docs/results.md: a reference point, not a choice. ``--corpus``
runs it on another corpus in HD's layout, e.g. one that ``studies.hd_speakers.rotation`` wrote.
``--set FIELD=VALUE`` (repeatable) changes a field of the dev config first, e.g. ``--set data.cmvn=meanvar``
for another recipe; docs/results.md has the issue's CMVN GRU run this way.

    RHEL_JAX_SHARED=/path/to/shared python -m studies.hd_speakers.gru_folds --protocol --num_seeds 5 --seed 0 \
        --out docs/results/hd_held_out_speakers/gru/dev_protocol
"""
from __future__ import annotations

import argparse
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from experiments import checkpoints, heidelberg_digits, optim, trainer
from experiments.tasks.heidelberg_digits import HeidelbergDigits
from experiments.workdir import git_revision
from rhel_jax import losses
from rhel_jax.nn import HamiltonianRNN
from studies.hd_speakers import cli


class GRUClassifier(nnx.Module):
  """inputs (B, T, n_in) -> per-step logits (B, T, n_out): a GRU layer, then a linear readout."""

  def __init__(self, n_in: int, hidden: int, n_out: int, *, rngs: nnx.Rngs):
    self.cell = nnx.GRUCell(n_in, hidden, rngs=rngs)
    self.out = nnx.Linear(hidden, n_out, rngs=rngs)
    self.hidden = hidden

  def __call__(self, x):
    def step(h, x_t):
      return self.cell(h, x_t)  # (new carry, output) = (h', h')
    h0 = jnp.zeros((x.shape[0], self.hidden), x.dtype)
    _, hs = jax.lax.scan(step, h0, jnp.swapaxes(x, 0, 1))
    return self.out(jnp.swapaxes(hs, 0, 1))


class HamiltonianClassifier(nnx.Module):
  """inputs (B, T, n_in) -> per-step logits (B, T, n_out): stacked Hamiltonian layers (BPTT), each
  feeding its ``rho(phi)`` to the next, then a linear readout."""

  def __init__(self, n_in: int, widths: tuple[int, ...], n_out: int, model, *, rngs: nnx.Rngs):
    sizes = (n_in,) + tuple(widths)
    self.layers = nnx.List([
        HamiltonianRNN(a, b, method="bptt", alpha=model.alpha, beta=model.beta, dt=model.dt, rho=model.rho,
                       w_scale=model.w_scale, in_scale=model.in_scale, b_scale=model.b_scale, rngs=rngs)
        for a, b in zip(sizes[:-1], sizes[1:])])
    self.out = nnx.Linear(sizes[-1], n_out, rngs=rngs)

  def __call__(self, x):
    for layer in self.layers:
      x = layer(x)
    return self.out(x)


def make_network(network: str, n_in: int, widths: tuple[int, ...], n_out: int, config, rngs: nnx.Rngs):
  if network == "gru":
    if len(widths) != 1:
      raise ValueError(f"--network gru takes one layer width, got --hidden {','.join(map(str, widths))}")
    return GRUClassifier(n_in, widths[0], n_out, rngs=rngs)
  return HamiltonianClassifier(n_in, widths, n_out, config.model, rngs=rngs)


def train_fold(config, speaker, hidden: tuple[int, ...], num_seeds: int, seed: int, network: str = "gru"
               ) -> tuple[list[np.ndarray], HeidelbergDigits]:
  """Trains ``num_seeds`` networks (``network``: 'gru' or 'hamiltonian', layer widths ``hidden``);
  returns, per seed, whether each evaluated example is classified right (bool ``(n,)``), and the task.
  Evaluated: held-out training speaker ``speaker``, or the test split when ``speaker`` is None."""
  config = config.copy_and_resolve_references()
  if speaker is not None:
    config.data.validation_speaker, config.data.eval_split = speaker, "validation"
  task = HeidelbergDigits.from_config(config, jnp.float32)
  total = config.num_epochs * task.steps_per_epoch
  tx = optim.make_optimizer(config.train, total)
  init_keys, data_keys, _, _ = trainer.seed_keys(seed, num_seeds)
  init = lambda k: nnx.split(make_network(network, task.n_in, hidden, task.n_out, config,
                                          nnx.Rngs(int(jax.random.randint(k, (), 0, 2**31 - 1)))))
  graphdef = init(init_keys[0])[0]  # the same structure for every seed
  apply = lambda p, x: nnx.merge(graphdef, p)(x)
  loss = losses.resolve_loss(task.loss)
  loss_fn = lambda p, x, y, m: loss(apply(p, x), y, m)

  @jax.jit  # compiled once for every seed; the data is an argument, not a baked-in constant
  def step(p, opt_state, i, data_key, data):
    x, y, m = task.train_batch(data, data_key, i)
    grads = jax.grad(loss_fn)(p, x, y, m)
    updates, opt_state = tx.update(grads, opt_state, p)
    return jax.tree.map(lambda a, b: a + b, p, updates), opt_state

  x, y, m = task.test_set(None)
  predict = jax.jit(lambda p: jnp.argmax(losses.pooled_logits(apply(p, x), m, task.pooling), -1))
  accs = []
  for s in range(num_seeds):
    params = init(init_keys[s])[1]
    opt_state = tx.init(params)
    for i in range(total):
      params, opt_state = step(params, opt_state, i, data_keys[s], task.train_data())
    accs.append(np.asarray(predict(params) == y))
    print(f"speaker {speaker} seed {s}: {100 * accs[-1].mean():.2f} %", flush=True)
  return accs, task


def main():
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--out", type=pathlib.Path, required=True)
  parser.add_argument("--network", choices=("gru", "hamiltonian"), default="gru")
  parser.add_argument("--hidden", type=cli.comma_list(int, "positive ints"), default=(128,),
                      help="layer widths, comma-separated (a stack: hamiltonian only)")
  parser.add_argument("--num_seeds", type=int, default=3)
  parser.add_argument("--seed", type=int, default=1000)
  parser.add_argument("--folds", type=cli.comma_list(int, "speaker numbers"), default=(0, 1, 2),
                      help="training speakers to hold out, one fold each")
  parser.add_argument("--protocol", action="store_true", help="train on every training speaker, score the test split")
  parser.add_argument("--corpus", default=None,
                      help="another corpus in HD's layout (default: the dev corpus under $RHEL_JAX_SHARED)")
  parser.add_argument("--set", type=cli.config_override, action="append", default=[], metavar="FIELD=VALUE",
                      help="change a field of the dev config, e.g. --set data.cmvn=meanvar (repeatable)")
  args = parser.parse_args()
  config = heidelberg_digits.get_config("dev")
  config.data.manual_dir = str(cli.dev_corpus(args.corpus, flag="--corpus"))
  cli.apply_overrides(config, args.set)
  widths = args.hidden
  if args.num_seeds < 1:
    parser.error(f"--num_seeds must be >= 1, got {args.num_seeds}")
  if min(widths) < 1:
    parser.error(f"--hidden: comma-separated positive ints, got {','.join(map(str, widths))!r}")
  if args.network == "gru" and len(widths) != 1:
    parser.error(f"--network gru takes one layer width, got --hidden {','.join(map(str, widths))}")
  tag = {"network": args.network, "hidden": widths[0] if len(widths) == 1 else list(widths),
         **({"overrides": {k: v for k, v in args.set}} if args.set else {})}
  name = {"gru": "GRU", "hamiltonian": "Hamiltonian network (BPTT)"}[args.network]
  recipe = "the dev recipe" + (" with " + ", ".join(f"`{k}={v!r}`" for k, v in args.set) if args.set else "")
  head = (f"{name} ({' + '.join(map(str, widths))} units) through {recipe}, {args.num_seeds} seeds of root "
          f"{args.seed}, final epoch (revision `{git_revision()}`)")
  rows = []
  if args.protocol:
    correct, task = train_fold(config, None, widths, args.num_seeds, args.seed, args.network)
    # The test-only speakers (the dev corpus's 03): those that never train.
    held_out = ~np.isin(task.speakers["test"], task.speakers["train"])
    names = ", ".join(f"{k:02d}" for k in sorted(set(task.speakers["test"][held_out].tolist())))
    for s, c in enumerate(correct):
      rows.append({"seed": s, "test_accuracy": float(c.mean()), "held_out_accuracy": float(c[held_out].mean()),
                   "held_out_speakers": names, **tag})
    cell = lambda key: cli.percent([r[key] for r in rows])
    lines = [head + f", the dev protocol on `{config.data.manual_dir}`:", "",
             f"| speaker {names} (held out) (n={int(held_out.sum())}) | whole test split (n={len(held_out)}) |",
             "|---|---|", f"| {cell('held_out_accuracy')} | {cell('test_accuracy')} |"]
    print(checkpoints.write_report(args.out, f"{args.network}_protocol", lines, rows))
    return
  for speaker in args.folds:
    for s, c in enumerate(train_fold(config, speaker, widths, args.num_seeds, args.seed, args.network)[0]):
      rows.append({"validation_speaker": speaker, "seed": s, "accuracy": float(c.mean()), **tag})
  speakers = sorted({r["validation_speaker"] for r in rows})
  per_fold = {k: [r["accuracy"] for r in rows if r["validation_speaker"] == k] for k in speakers}
  lines = [head + ", leave-one-speaker-out over the dev corpus's training speakers:", "",
           "| " + " | ".join(f"speaker {k:02d}" for k in speakers) + " | mean |",
           "|" + "---|" * (len(speakers) + 1),
           "| " + " | ".join(cli.percent_row(list(per_fold.values()))) + " |"]
  print(checkpoints.write_report(args.out, f"{args.network}_folds", lines, rows))

if __name__ == "__main__":
  main()
