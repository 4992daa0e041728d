"""Heidelberg Digits (Table 1, left column): 20-way spoken-digit classification from log-mels.

    python -m experiments.main --config=experiments/heidelberg_digits.py \\
        --config.data.manual_dir=/path/to/hd            # official layout, extracted or hd_audio.tar.gz
    python -m experiments.main --config=experiments/heidelberg_digits.py:quick   # synthetic stand-in, CPU
    RHEL_JAX_SHARED=/path/to/shared \
    python -m experiments.main --config=experiments/heidelberg_digits.py:dev     # real-speech dev corpus
    python -m experiments.main --config=experiments/heidelberg_digits.py:hard    # harder synthetic stand-in

Variants: ``full`` (the official corpus), ``quick`` (a small run on the basic stand-in), ``dev`` (the
full protocol on the FSDD dev corpus at ``$RHEL_JAX_SHARED/data/fsdd_dev``, 10 classes, or on
``--config.data.manual_dir``), ``hard`` (the full protocol on the harder, synthetic stand-in).
Feature options (``cmvn``, ``deltas``, ...) and augmentation (``data.augment.*``) are off by default;
see docs/hd_features.md. Each variant holds only the values its protocol chooses; every other field is
at the default its declaration gives (shared fields: ``base_config.py``; the task's: ``tasks/heidelberg_digits.py``;
``data.*``: ``hd_data.py``), where its meaning and check are too.

Classification reads the readout's logits pooled over the valid (unpadded) steps of each sequence
(``task.pooling``: their mean by default) and trains with their cross-entropy (loss 'ce_<pooling>').
"""
import os
import pathlib

import ml_collections

from experiments import base_config

TASK = "heidelberg_digits"
SHARED_ENV = "RHEL_JAX_SHARED"  # path to the shared folder; the dev corpus is at $RHEL_JAX_SHARED/data/fsdd_dev


def dev_corpus_dir():
  """``$RHEL_JAX_SHARED/data/fsdd_dev`` when the variable is set (an error if that is missing), else None."""
  shared = os.environ.get(SHARED_ENV)
  if not shared:
    return None
  path = pathlib.Path(shared).expanduser() / "data" / "fsdd_dev"
  if not (path / "train_filenames.txt").exists():
    raise ValueError(f"{SHARED_ENV}={shared}: {path} does not hold the dev corpus (no train_filenames.txt)")
  return str(path)


# The official protocol: the whole official test split is evaluated (eval_size is unused), and an
# epoch is one pass over the training split (steps_per_epoch 0).
FULL = {
    # ... and the `readout` floor: what the untrained network's states give a trained readout.
    "methods": ("bptt", "rhel", "rhel_centered", "eprop", "tbptt", "readout"),
    "num_epochs": 200,
    "steps_per_epoch": 0,
    "batch_size": 64,
    "eval_size": 0,
    "alignment_epochs": (0, 100, 199),
    "model.num_hidden": 128,
    "model.dt": 0.5,
    "model.w_scale": 0.5,
    "model.in_scale": 0.5,
    "train.lr": 1e-3,
    "train.schedule": "cosine",
    "method.eps": 1e-3,
}

VARIANTS = {
    "full": FULL,
    # A small run on the basic eSpeak NG stand-in.
    "quick": {
        **FULL,
        "data.use_standin": True,
        "num_epochs": 12,
        "batch_size": 32,
        "alignment_epochs": (0, 6, 11),
        "checkpoint_every": 4,
        "model.num_hidden": 64,
        "train.lr": 3e-3,
    },
    # The FSDD dev corpus (data.manual_dir: dev_corpus_dir(), read when the config is built): 4
    # speakers, English only; speaker 03 is test-only. With only three training speakers, carving one
    # out for validation would cost a third of the speaker variety the model learns from, so all three
    # train, and choices are made by leave-one-speaker-out folds over them
    # (--config.data.validation_speaker=k with eval_split=validation; docs/hd_features.md).
    "dev": {
        **FULL,
        "data.require_manual_dir": True,
        "data.num_classes": 10,
        "data.num_validation_speakers": 0,
        # Chosen on the leave-one-speaker-out folds (docs/hd_features.md, studies/hd_speakers/results/fold_probes):
        # the max over time of the logits, deltas, VTLP + time-stretch augmentation and 50 epochs took the
        # folds' mean from 39.6 % (time-averaged logits of the plain log-mels) to 54.5 %.
        "task.pooling": "max",
        "data.deltas": 1,
        "data.augment.time_stretch": 0.15,
        "data.augment.band_warp": 0.1,
        "num_epochs": 50,
        "alignment_epochs": (0, 25, 49),
        # Fourth round (docs/hd_features.md): trimming leading and trailing audio more than 30 dB below
        # the peak took the folds' mean from 54.5 % to 61.8 % (20 dB: 56.5 %, 40 dB: 58.2 %).
        "data.trim_db": 30.0,
        # Seventh round: flooring each utterance's mel power at its peak - 40 dB beat the trimmed config
        # on all 3 folds with two seed roots (61.8 -> 64.1 % at root 1000, 57.2 -> 60.2 % at 2000;
        # 30, 35, 45, 50 dB: 56.9, 62.1, 62.5, 59.2 % at root 1000).
        "data.top_db": 40.0,
        # e-prop's reverse-mode form: the same gradient as the online traces (benchmarks/eprop_forms.py),
        # whose (seeds, B, 128, 128) state per step would make it the slowest method by far.
        "method.eprop_online": False,
    },
    # The full protocol on the harder stand-in (synth_corpus.HARD).
    "hard": {
        **FULL,
        "data.use_standin": True,
        "data.standin_voices": "many",
        "data.standin_noise_snr_db": 5.0,
        "data.standin_reverb_rt60": 0.5,
        "data.standin_pad_ms": 300.0,
        "data.standin_gain_db": 10.0,
    },
}


def get_config(variant: str = "full") -> ml_collections.ConfigDict:
  if variant not in VARIANTS:
    raise ValueError(f"experiments/heidelberg_digits.py: unknown variant {variant!r}; use one of {list(VARIANTS)}")
  values = VARIANTS[variant]
  if variant == "dev":  # read now, not at import: the environment may change between calls
    values = {**values, "data.manual_dir": dev_corpus_dir()}
  return base_config.get_config(TASK, values, name=f"{TASK}_{variant}")
