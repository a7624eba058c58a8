"""gzmorph: Galaxy Zoo morphology workflow library."""

__version__ = "0.2.0"  # the one place the version lives (pyproject reads it)
