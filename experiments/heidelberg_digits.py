"""Heidelberg Digits (Table 1, left column): 20-way spoken-digit classification from log-mels.

    python -m experiments.main --config=experiments/heidelberg_digits.py \\
        --config.data.manual_dir=/path/to/hd            # official layout, extracted or hd_audio.tar.gz
    python -m experiments.main --config=experiments/heidelberg_digits.py:quick   # espeak-ng stand-in, CPU

Classification reads the readout's logits averaged over the valid (unpadded) steps of each
sequence and trains with their cross-entropy (loss 'ce_mean').
"""
import ml_collections
from ml_collections import config_dict

from experiments import base_config


def get_config(variant: str = "full") -> ml_collections.ConfigDict:
  if variant not in ("full", "quick"):
    raise ValueError(f"experiments/heidelberg_digits.py: unknown variant {variant!r}; use 'full' or 'quick'")
  c = base_config.get_config()
  c.name = f"heidelberg_digits_{variant}"
  c.methods = ("bptt", "rhel", "rhel_centered", "eprop", "tbptt")
  c.num_epochs = 200
  # 0 = one pass over the training split per epoch.
  c.steps_per_epoch = 0
  c.batch_size = 64
  c.eval_size = 0  # unused: the whole official test split is evaluated
  c.alignment_epochs = (0, 100, 199)
  c.model.num_hidden = 128
  c.model.dt = 0.5
  c.model.w_init = "gaussian"
  c.model.w_scale = 0.5
  c.model.in_scale = 0.5
  c.train.lr = 1e-3
  c.train.schedule = "cosine"
  c.train.warmup_steps = 0
  c.model.exact_reversible = False
  c.method.eps = 1e-3
  c.train.w_lr_scale = 1.0

  c.task = ml_collections.ConfigDict({"name": "heidelberg_digits"})
  c.data = ml_collections.ConfigDict()
  # Official layout (extracted, or a directory holding hd_audio.tar.gz); None = download it.
  c.data.manual_dir = config_dict.placeholder(str)
  # With no manual_dir: synthesise and use the espeak-ng stand-in instead of downloading.
  c.data.use_standin = False
  c.data.standin_speakers = 12
  c.data.standin_trials = 6
  c.data.standin_seed = 0
  # TFDS cache root (one sub-directory per source).
  c.data.data_dir = "~/tensorflow_datasets/rhel_jax"
  # Features: 16 kHz, 25 ms windows, 10 ms hop, 40 log-mel bands, 2 frames averaged per step.
  c.data.sample_rate = 16000
  c.data.n_mels = 40
  c.data.win_ms = 25.0
  c.data.hop_ms = 10.0
  c.data.time_downsample = 2
  # Pad/crop every sequence to this many steps (0 = the longest sequence).
  c.data.max_frames = 0
  c.data.num_validation_speakers = 1

  if variant == "quick":
    c.data.use_standin = True
    c.num_epochs = 12
    c.batch_size = 32
    c.alignment_epochs = (0, 6, 11)
    c.checkpoint_every = 4
    c.model.num_hidden = 64
    c.train.lr = 3e-3
  return c
