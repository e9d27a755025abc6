"""bench/ scripts imported as modules by the tests that check their logic."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parents[1] / "bench"


def load_bench(name: str):
    """bench/NAME.py as a module (registered in sys.modules, so its dataclasses and pickles work)."""
    spec = importlib.util.spec_from_file_location(name, BENCH_DIR / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
