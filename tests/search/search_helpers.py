"""Shared by the search tests and their conftest (a module of its own: `from conftest import ...` picks
whichever conftest.py pytest imported last when several test directories run together)."""

from __future__ import annotations

from minitron.model.load import BUILTIN_CHECKPOINTS

TINY_DIR = BUILTIN_CHECKPOINTS["tiny"]
HAS_TINY = (TINY_DIR / "config.json").exists() and any(TINY_DIR.glob("*.safetensors"))
