"""Experiments on top of the library: configs (``base_config`` and one module per task's config, checked
by ``config_check``), the tasks behind one interface (``experiments.tasks``), training (``train``,
``trainer``, ``optim``, ``sharding``, ``checkpoints``, ``workdir``; ``main`` is the command line), and
the reports, which know tasks only through that interface (``summary``, ``report``, ``probe_table``)."""
