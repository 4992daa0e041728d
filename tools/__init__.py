"""Developer tools: the generated module diagram with its layering rules (``tools.architecture``) and the
bit-for-bit reproduction check for refactors (``tools.reproduce``)."""
