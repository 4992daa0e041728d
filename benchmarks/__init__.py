"""Measurements of cost and fidelity: train-step time and memory (``run``, ``profile_step``,
``eprop_forms``), gradient fidelity (``fidelity``, ``core_check``, ``checkpoint_fidelity``) and the
mode spectrum (``spectrum``). Speed and memory targets are checked here, not in timed tests; each
writes the files of a ``docs/results/`` folder."""
