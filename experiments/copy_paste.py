"""Copy-Paste (Table 1, right column): recall 3-bit patterns after a delay, 400 steps in all.

    python -m experiments.main --config=experiments/copy_paste.py          # full paper protocol
    python -m experiments.main --config=experiments/copy_paste.py:quick    # ~10 min on 2 CPU cores
"""
import ml_collections
from ml_collections import config_dict


def get_config(variant: str = "full") -> ml_collections.ConfigDict:
  if variant not in ("full", "quick"):
    raise ValueError(f"experiments/copy_paste.py: unknown variant {variant!r}; use 'full' or 'quick'")
  c = ml_collections.ConfigDict()
  # Name of the run; the default workdir is runs/<name>.
  c.name = f"copy_paste_{variant}"
  # Root seed; seed i of the sweep uses jax.random.split(key(seed), num_seeds)[i].
  c.seed = 0
  # Seeds trained at once by one vmapped, jitted program.
  c.num_seeds = 5
  # Devices the seeds are sharded over (0 = all local devices); num_seeds must be a multiple.
  c.num_devices = 0
  # Call jax.distributed.initialize() first, for several hosts (see BUILD.md).
  c.distributed = False
  # Gradient methods, trained one after the other in one invocation.
  # 'readout' trains only W_out, b_out: the untrained network's memory, the floor to beat.
  c.methods = ("bptt", "rhel", "rhel_centered", "eprop", "tbptt", "readout")
  # Training length: num_epochs x steps_per_epoch optimizer steps, fresh data every step.
  c.num_epochs = 200
  c.steps_per_epoch = 50
  c.batch_size = 64
  # Fixed per-seed test set size (sequences).
  c.eval_size = 1024
  # Checkpoint every this many epochs (and at the end); the two newest are kept.
  c.checkpoint_every = 10
  # Epochs (start of) at which each method's gradient is compared with BPTT's on a probe batch
  # (the paper's Figure 1 uses 0, 100 and 199; the others show how e-prop's alignment evolves).
  c.alignment_epochs = (0, 10, 25, 50, 100, 150, 199)
  c.alignment_batch_size = 64

  c.task = ml_collections.ConfigDict()
  # Which task; 'copy_paste' generates data on the device from keys.
  c.task.name = "copy_paste"
  c.task.num_bits = 3
  c.task.pattern_length = 5
  c.task.steps_per_symbol = 2
  c.task.marker_steps = 1
  # Total steps per sequence (pattern + delay + marker + recall window).
  c.task.seq_len = 400
  # Curriculum over the delay: train at these lengths first (curriculum_stage_epochs epochs each),
  # then at seq_len; () turns it off. Tests always use seq_len.
  c.task.curriculum = ()
  c.task.curriculum_stage_epochs = 10

  c.model = ml_collections.ConfigDict()
  c.model.num_hidden = 64
  c.model.alpha = 1.0
  c.model.beta = 1.0
  c.model.dt = 0.5
  c.model.rho = "tanh"
  # W init: 'gaussian' (W ~ w_scale N(0, 1/N)) or 'spectral': the linearised network's mode
  # frequencies ~ U(omega_min, omega_max) (rhel_jax.spectral_weights; the leapfrog needs
  # dt * omega_max < 2). A Gaussian W puts every mode near sqrt(alpha), and 379 steps of delay
  # then train to ~95 %; spread frequencies reach 99+ % (probe table: docs/copy_paste_recipe.md).
  # omega_min = 0.3 leaves the slowest modes a margin from the stability edge (eigenvalue 0.09;
  # at 0.1 one Adam step can push them negative and the network turns chaotic).
  c.model.w_init = "spectral"
  c.model.omega_min = 0.3
  c.model.omega_max = 3.0
  c.model.w_scale = 0.3
  # B ~ in_scale N(0, 1/n_in), b ~ b_scale N(0, 1). A small input keeps the pattern's imprint in
  # the network's near-linear range.
  c.model.in_scale = 0.1
  c.model.b_scale = 0.1
  c.model.out_scale = 1.0
  # 'float32' or 'float64' (float64 turns on jax_enable_x64).
  c.model.dtype = "float32"
  # RHEL phases on an integer grid of step 2**-grid_bits, so the echo retraces the forward phase
  # bit for bit (README, "Exact-reversible mode"); BPTT, tBPTT, e-prop and readout ignore it.
  # On at T=400: trained networks need a nudge that plain float32 cannot resolve. One-sided RHEL
  # in float32 at eps 1e-3 (bias O(eps)) drove 3 of 5 seeds' W to ~half its modes unstable
  # (chaotic, at chance) within 60 epochs (docs/copy_paste_recipe.md); exact mode affords 1e-5.
  c.model.exact_reversible = True
  c.model.grid_bits = 26

  c.method = ml_collections.ConfigDict()
  # RHEL nudge per sequence (see README): 1e-5 with the exact mode; in plain float32 1e-3 suits
  # these tasks at init and T <= 400 (the fidelity study in docs/results.md). None means
  # rhel_jax.default_eps for the dtype and mode.
  c.method.eps = config_dict.FieldReference(1e-5, field_type=float)  # a float that may be set to None
  # Truncated BPTT window (the paper's 2 steps).
  c.method.tbptt_k = 2

  c.train = ml_collections.ConfigDict()
  c.train.optimizer = "adam"
  c.train.lr = 3e-3
  # 'constant', 'cosine' (decay to 0 over the run) or 'warmup_cosine'.
  c.train.schedule = "warmup_cosine"
  c.train.warmup_steps = 200
  # Global-norm gradient clipping; 0 turns it off.
  c.train.clip_norm = 1.0
  # Learning-rate multiplier for W alone (Adam moves every entry by ~lr per step, and a few steps
  # can push the slowest modes of a spectral W past the stability edge).
  c.train.w_lr_scale = 0.1
  # Parameters kept at their initial values (names from rhel_jax.PARAM_NAMES), e.g. ('W',) to
  # see what a method does with the input and readout alone.
  c.train.frozen_params = ()

  if variant == "quick":
    c.methods = ("bptt", "rhel", "rhel_centered", "eprop", "tbptt")
    c.task.seq_len = 100
    c.num_epochs = 16
    c.steps_per_epoch = 100
    c.batch_size = 32
    c.eval_size = 512
    c.checkpoint_every = 4
    c.alignment_epochs = (0, 8, 15)
    # At T=100, init scale 1.0 made 2 of 5 seeds chaotic enough that the float32 echo stopped
    # retracing and one-sided RHEL's estimate lost all alignment; 0.5 kept all 5 seeds learning.
    c.model.w_init = "gaussian"
    c.model.w_scale = 0.5
    c.model.in_scale = 0.5
    c.train.lr = 3e-3
    c.train.schedule = "constant"
    c.train.warmup_steps = 0
    c.model.exact_reversible = False
    c.method.eps = 1e-3
    c.train.w_lr_scale = 1.0
  return c
