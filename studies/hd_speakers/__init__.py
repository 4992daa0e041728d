"""The Heidelberg Digits speaker study: how the HD recipe generalises to a voice it never trained on.

The measurements behind the ``dev`` variant of ``experiments/heidelberg_digits.py`` and its protocol on
a real-speech corpus in HD's layout (``NOTES.md`` here: the rounds of fold probes, the protocols they
led to, and the commands of each number). Run a module as ``python -m studies.hd_speakers.<module>``;
revisions before the study had its own package ran them as ``python -m benchmarks.hd_<module>``
(``rotation`` was ``benchmarks.hd_speaker_rotation``).
"""
