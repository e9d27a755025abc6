"""minitron: compress language models the Minitron way."""

__version__ = "0.1.0"

from minitron import openmp as _openmp

_openmp.configure()  # before torch is imported: how its threads wait (see minitron/openmp.py)
