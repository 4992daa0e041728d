"""Fields every experiment shares: seeds and devices, the model, the gradient methods' options and
training. Task configs (``copy_paste.py``, ``heidelberg_digits.py``) start from :func:`get_config`
and set their task, their data and the values their protocol chooses.
"""
import ml_collections
from ml_collections import config_dict

from rhel_jax.methods import all_options
from rhel_jax.model import PARAM_NAMES


def method_config() -> ml_collections.ConfigDict:
  """``config.method``: one field per registered method option (``rhel_jax.METHODS``), at its default.

  Options whose default is None (computed from dtype and model, e.g. eps) are typed fields that
  may be set to a value or back to None.
  """
  c = ml_collections.ConfigDict()
  for option in all_options():
    kind = int if option.kind == "positive_int" else float
    c[option.config_key] = (config_dict.FieldReference(option.default, field_type=kind)
                            if option.default is None else option.default)
  return c


def get_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  # Name of the run; the default workdir is runs/<name>.
  c.name = "base"
  # Root seed; seed i of the sweep uses jax.random.split(key(seed), num_seeds)[i].
  c.seed = 0
  # Seeds trained at once by one vmapped, jitted program.
  c.num_seeds = 5
  # Devices the seeds are sharded over (0 = all local devices); num_seeds must be a multiple.
  c.num_devices = 0
  # Call jax.distributed.initialize() first, for several hosts (see BUILD.md).
  c.distributed = False
  # Gradient methods (names from rhel_jax.METHODS), trained one after the other in one invocation.
  c.methods = ("bptt", "rhel", "rhel_centered", "eprop", "tbptt")
  # Training length: num_epochs x steps_per_epoch optimizer steps.
  c.num_epochs = 200
  c.steps_per_epoch = 50
  c.batch_size = 64
  # Test set size per seed (tasks with a fixed test split ignore it).
  c.eval_size = 1024
  # Checkpoint every this many epochs (and at the end); the two newest are kept.
  c.checkpoint_every = 10
  # Epochs (start of) at which each method's gradient is compared with BPTT's on a probe batch.
  c.alignment_epochs = (0, 100, 199)
  c.alignment_batch_size = 64

  # Per-method recipes: config.recipes.<method> holds the train.* / method.* fields that differ for
  # that method (experiments.recipes); the sections above are the shared recipe.
  c.recipes = ml_collections.ConfigDict()
  # A vmapped hyperparameter sweep: {'dotted.field': (values, ...)} for numeric fields of the update
  # (experiments.sweep.SWEEPABLE); every combination trains beside the seeds in one program.
  c.sweep = config_dict.FieldReference({}, field_type=object)

  c.model = ml_collections.ConfigDict()
  c.model.num_hidden = 64
  c.model.alpha = 1.0
  c.model.beta = 1.0
  c.model.dt = 0.5
  c.model.rho = "tanh"
  # W init: 'gaussian' (W ~ w_scale N(0, 1/N)) or 'spectral': the linearised network's mode
  # frequencies ~ U(omega_min, omega_max) (rhel_jax.spectral_weights; the leapfrog needs
  # dt * omega_max < 2).
  c.model.w_init = "gaussian"
  c.model.omega_min = 0.3
  c.model.omega_max = 3.0
  c.model.w_scale = 0.5
  # B ~ in_scale N(0, 1/n_in), b ~ b_scale N(0, 1).
  c.model.in_scale = 0.5
  c.model.b_scale = 0.1
  c.model.out_scale = 1.0
  # 'float32' or 'float64' (float64 turns on jax_enable_x64).
  c.model.dtype = "float32"
  # RHEL phases on an integer grid of step 2**-grid_bits, so the echo retraces the forward phase
  # bit for bit (README, "Exact-reversible mode"); the other methods ignore it.
  c.model.exact_reversible = False
  c.model.grid_bits = 26
  # Time steps per iteration of every scan over time, the same for every method; None: the
  # backend's default (rhel_jax.model.DEFAULT_UNROLL: 1 on CPU). Only round-off depends on it.
  c.model.unroll = config_dict.FieldReference(None, field_type=int)

  # eps: the RHEL nudge per sequence (see README; None = rhel_jax.default_eps for the dtype and
  # mode); tbptt_k: the truncated-BPTT window (the paper's 2 steps); eprop_online: e-prop's forward-mode
  # traces (True) or the same gradient in reverse mode (False: about BPTT's cost and O(T) memory).
  c.method = method_config()

  c.train = ml_collections.ConfigDict()
  c.train.optimizer = "adam"
  c.train.lr = 3e-3
  # 'constant', 'cosine' (decay to 0 over the run) or 'warmup_cosine'.
  c.train.schedule = "constant"
  c.train.warmup_steps = 0
  # Global-norm gradient clipping; 0 turns it off.
  c.train.clip_norm = 1.0
  # Decoupled weight decay (AdamW: each step shrinks W, B and W_out, not the biases, by lr x this);
  # 0 = plain Adam.
  c.train.weight_decay = 0.0
  # Learning-rate multiplier of each parameter tensor (e.g. W's, whose slowest modes sit near the
  # stability edge; or the recurrent tensors' of a method whose gradient for them is weak).
  c.train.lr_scale = ml_collections.ConfigDict({k: 1.0 for k in PARAM_NAMES})
  # Parameters kept at their initial values (names from rhel_jax.PARAM_NAMES), e.g. ('W',) to
  # see what a method does with the input and readout alone.
  c.train.frozen_params = ()
  return c
