"""Examples of the library used as a user would: ``stacked_rnn`` trains a model built from
``rhel_jax.nn.HamiltonianRNN`` layers with plain optax."""
