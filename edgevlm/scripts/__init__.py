"""edgevlm.scripts: the ``python -m edgevlm.scripts.NAME`` tools (data generators, tuning
and measurement runs), kept apart so library packages hold no command-line entry points."""
