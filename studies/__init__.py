"""Side studies: each a package with its own measurements and notes, outside the library and the
experiments. Nothing outside ``studies`` imports from it (a rule of ``tools.architecture``)."""
