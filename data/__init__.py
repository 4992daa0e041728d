"""Datasets: the Heidelberg Digits TFDS builder (log-mel features), its loader into padded arrays, the
on-the-fly augmentation, and the espeak-ng stand-in corpus. Knows nothing of the model or training."""
