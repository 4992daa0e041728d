"""One method's jitted, seed-vmapped functions: init, a whole epoch (a ``lax.scan`` of optimizer
steps), evaluation and gradient alignment with BPTT."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

import rhel_jax
from experiments.optim import make_optimizer
from experiments.sweep import optimizer_values
from rhel_jax.alignment import alignment_with
from rhel_jax.integrator import forward_readouts
from rhel_jax.losses import resolve_loss
from rhel_jax.methods import METHODS


def model_config(config) -> rhel_jax.ModelConfig:
  m = config.model
  return rhel_jax.ModelConfig(alpha=m.alpha, beta=m.beta, dt=m.dt, rho=m.rho,
                              exact_reversible=m.exact_reversible, grid_bits=m.grid_bits, unroll=m.unroll)


def method_options(config, method: str) -> dict:
  """The method's options from ``config.method.<config_key>``, defaults resolved (None -> default)."""
  spec = rhel_jax.METHODS[method]
  given = {o.name: config.method.get(o.config_key) for o in spec.options}
  return spec.resolve_options({k: v for k, v in given.items() if v is not None}, config.model.dtype,
                              model_config(config))


def seed_keys(seed: int, num_seeds: int) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
  """Each seed's ``(init, data, test, probe)`` keys, each ``(num_seeds,)``, from the root ``seed``.

  The one derivation every run uses, so that a tool that rebuilds a run's initial state (to
  restore its checkpoints) gets the same structure.
  """
  per_seed = jax.vmap(lambda k: jax.random.split(k, 4))(jax.random.split(jax.random.key(seed), num_seeds))
  return tuple(per_seed[:, i] for i in range(4))


def _all_finite(tree) -> jax.Array:
  return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]))


class MethodTrainer:
  """Jitted, replica-vmapped functions for one method: init, one epoch, evaluation, alignment.

  A replica is a seed, or in a sweep (``experiments.sweep``) a (setting, seed) pair: ``epoch`` and
  ``alignment`` then take each replica's swept values, ``{'train.lr': (R,) array, ...}``.
  """

  def __init__(self, config, task, method: str, dtype, swept: tuple[str, ...] = ()):
    self.config, self.task, self.method, self.dtype = config, task, method, dtype
    self.model = model_config(config)
    self.options = method_options(config, method)
    self.loss_fn = resolve_loss(task.loss)
    self.steps_per_epoch = task.steps_per_epoch
    self.total_steps = config.num_epochs * self.steps_per_epoch
    # A swept field takes its general form here too, so the optimizer state has the structure
    # that every replica's optimizer updates.
    template = {f: 1.0 for f in swept}
    self.optimizer = make_optimizer(config.train, self.total_steps, optimizer_values(template))
    self.init = jax.jit(jax.vmap(self._init))
    # seq_len is static: each curriculum length compiles once.
    # The task's training arrays (if any) are an argument shared by every seed, not a constant.
    self._epoch_fn = jax.jit(lambda state, keys, data, epoch, seq_len, values: jax.vmap(
        lambda s, k, v: self._epoch(s, k, data, epoch, seq_len, v))(state, keys, values), static_argnums=4)
    self.evaluate = jax.jit(jax.vmap(self._evaluate))
    self._alignment_fn = jax.jit(jax.vmap(self._alignment))

  def epoch(self, state, keys, data, epoch, seq_len, values=None):
    """One epoch of every replica: ``(state, mean train loss (R,))``."""
    return self._epoch_fn(state, keys, data, epoch, seq_len, values or {})

  def alignment(self, params, probes, values=None):
    """Cosine with BPTT per parameter tensor, ``{'W': (R,), ...}``, on each replica's probe batch."""
    return self._alignment_fn(params, probes, values or {})

  def _replica_options(self, values):
    # A swept eps is traced; methods without a nudge ignore it, as they ignore config.method.eps.
    if "method.eps" in values and "eps" in self.options:
      return {**self.options, "eps": values["method.eps"]}
    return self.options

  def _init(self, key):
    m = self.config.model
    params = rhel_jax.init_params(key, self.task.n_in, m.num_hidden, self.task.n_out, dtype=self.dtype,
                                  w_scale=m.w_scale, in_scale=m.in_scale, b_scale=m.b_scale,
                                  out_scale=m.out_scale,
                                  spectrum=((m.alpha, m.beta, m.omega_min, m.omega_max)
                                            if m.w_init == "spectral" else None))
    return {"params": params, "opt_state": self.optimizer.init(params), "diverged": jnp.array(False)}

  def _grads(self, params, batch, method=None, options=None):
    method = METHODS[method or self.method]
    options = self.options if options is None else options
    return method.bind(self.model, self.loss_fn, **options)(params, *batch)

  def _epoch(self, state, data_key, data, epoch, seq_len, values):
    """One epoch for one replica. A non-finite loss or gradient freezes the replica (no update)."""
    optimizer = (make_optimizer(self.config.train, self.total_steps, optimizer_values(values))
                 if optimizer_values(values) else self.optimizer)
    options = self._replica_options(values)

    def train_step(state, i):
      step = epoch * self.steps_per_epoch + i
      loss, grads = self._grads(state["params"], self.task.train_batch(data, data_key, step, seq_len),
                                options=options)
      # Frozen tensors get no update (and do not count towards the clipping norm).
      grads = {k: jnp.zeros_like(g) if k in self.config.train.frozen_params else g for k, g in grads.items()}
      ok = jnp.isfinite(loss) & _all_finite(grads) & ~state["diverged"]
      updates, opt_state = optimizer.update(grads, state["opt_state"], state["params"])
      params = optax.apply_updates(state["params"], updates)
      keep = lambda new, old: jax.tree.map(lambda n, o: jnp.where(ok, n, o), new, old)
      new_state = {"params": keep(params, state["params"]), "opt_state": keep(opt_state, state["opt_state"]),
                   "diverged": state["diverged"] | ~ok}
      return new_state, loss

    state, step_losses = jax.lax.scan(train_step, state, jnp.arange(self.steps_per_epoch))
    return state, jnp.mean(step_losses)

  def _evaluate(self, params, test):
    inputs, targets, mask = test
    return self.task.metrics(forward_readouts(params, self.model, inputs), targets, mask)

  def _alignment(self, params, probe, values):
    _, ref = self._grads(params, probe, "bptt", {})
    _, grads = self._grads(params, probe, options=self._replica_options(values))
    return alignment_with(grads, ref)
