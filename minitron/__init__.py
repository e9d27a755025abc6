"""minitron: compress language models the Minitron way."""

__version__ = "0.1.0"
