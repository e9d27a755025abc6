"""minitron: compress language models the Minitron way."""

__version__ = "0.1.0"

import os as _os

# OpenMP threads that spin while they wait make every small op stall when another process holds a
# core (measured: 2 threads 0.30 s per tiny forward vs 0.18 s with 1 thread or with PASSIVE, with
# one other busy process on 2 cores). Set before torch is imported (the CLI imports it lazily);
# an explicit OMP_WAIT_POLICY wins.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
