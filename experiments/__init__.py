"""Experiments on top of the library: configs (each field declared once in the ``schema``: the shared ones
in ``base_config``, a task's in its class; one module per task's config holds its variants' values;
``config_check`` checks a whole config), the tasks behind one interface (``experiments.tasks``), training (``train``,
``trainer``, ``optim``, ``sharding``, ``checkpoints``, ``workdir``; ``main`` is the command line), and
the reports, which know tasks only through that interface (``summary``, ``report``, ``probe_table``)."""
