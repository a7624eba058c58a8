"""gzmorph: Galaxy Zoo morphology workflow library."""

__version__ = "0.1.0"
