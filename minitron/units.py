"""Parse and format the quantities users type: byte sizes, token counts, percentages, dtypes.

Every parser takes the flag it serves, so a bad value fails with one line that names the flag:
`--budget: cannot read '22G' (ambiguous unit 'G': write GiB for 2^30 or GB for 10^9 bytes)`.
"""

from __future__ import annotations

import math
import re

from minitron.errors import MinitronError

# Binary units are powers of 1024, decimal units powers of 1000, as on the GPU spec sheets.
BYTE_UNITS = {
    "b": 1,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
    "tib": 2**40,
    "kb": 10**3,
    "mb": 10**6,
    "gb": 10**9,
    "tb": 10**12,
}
# A bare number is a byte count; below this it is far more likely a forgotten unit ("--budget 22").
BARE_BYTES_MIN = 2**20
# Context lengths are conventionally binary: "128k" = 131072 tokens, "1M" = 1048576.
TOKEN_SUFFIXES = {"": 1, "k": 2**10, "m": 2**20}

# Storage bytes per element of the dtypes weights and caches are kept in.
DTYPE_BYTES = {
    "float32": 4,
    "bfloat16": 2,
    "float16": 2,
    "float8_e4m3fn": 1,
    "float8_e5m2": 1,
}
DTYPE_ALIASES = {
    "fp32": "float32",
    "float": "float32",
    "bf16": "bfloat16",
    "fp16": "float16",
    "half": "float16",
    "fp8": "float8_e4m3fn",
    "float8": "float8_e4m3fn",
    "fp8_e4m3": "float8_e4m3fn",
    "fp8_e5m2": "float8_e5m2",
}

_NUMBER_UNIT = re.compile(r"^\s*([+-]?[0-9]*\.?[0-9]+(?:e[+-]?[0-9]+)?)\s*([a-z]*)\s*$", re.IGNORECASE)


def _split(text: str, flag: str, what: str) -> tuple[float, str]:
    match = _NUMBER_UNIT.match(str(text))
    if not match:
        raise MinitronError(f"{flag}: cannot read {text!r} as {what}")
    value = float(match.group(1))
    if not math.isfinite(value):
        raise MinitronError(f"{flag}: {text!r} is too large to be {what}")
    return value, match.group(2).lower()


def parse_bytes(text: str | int, flag: str = "--budget", allow_zero: bool = False) -> int:
    """'22GiB', '24GB', '19660MiB', '0.5TiB' or plain bytes ('1048576', at least 1 MiB) -> bytes (> 0, or >= 0)."""
    value, unit = _split(str(text), flag, "a size such as 22GiB, 24GB or 19660MiB")
    if unit in ("k", "m", "g", "t", "ki", "mi", "gi", "ti"):
        raise MinitronError(
            f"{flag}: cannot read {text!r} (ambiguous unit {unit.upper()!r}: write "
            f"{unit[0].upper()}iB for powers of 1024 or {unit[0].upper()}B for powers of 1000)"
        )
    if unit not in BYTE_UNITS and unit != "":
        raise MinitronError(
            f"{flag}: unknown size unit in {text!r}; use B, KiB, MiB, GiB, TiB, KB, MB, GB or TB"
        )
    size = round(value * BYTE_UNITS.get(unit, 1))
    if size < 0 or (size == 0 and not allow_zero):
        least = "zero or more" if allow_zero else "more than zero"
        raise MinitronError(f"{flag}: must be {least} bytes, got {text!r}")
    if unit == "" and 0 < size < BARE_BYTES_MIN:
        raise MinitronError(
            f"{flag}: a bare number is bytes, so {text!r} means {size} bytes; add a unit, e.g. {text}GiB or {text}GB"
        )
    return size


def parse_tokens(text: str | int, flag: str = "--context") -> int:
    """'128k' (131072), '8k', '1M' (1048576) or '131072' -> a positive whole number of tokens."""
    value, suffix = _split(str(text), flag, "a token count such as 128k, 8k, 1M or 131072")
    if suffix not in TOKEN_SUFFIXES:
        raise MinitronError(f"{flag}: unknown suffix in {text!r}; use k (x1024), M (x1048576) or none")
    tokens = value * TOKEN_SUFFIXES[suffix]
    if tokens != int(tokens):
        raise MinitronError(f"{flag}: {text!r} is not a whole number of tokens")
    if tokens <= 0:
        raise MinitronError(f"{flag}: must be at least 1 token, got {text!r}")
    return int(tokens)


def parse_fraction(text: str | float, flag: str = "--headroom", whole: bool = False) -> float:
    """'5%' or '0.05' -> 0.05; must lie in [0, 1), or [0, 1] when `whole` (100% means everything)."""
    raw = str(text).strip()
    percent = raw.endswith("%")
    try:
        value = float(raw.rstrip("%").strip())
    except ValueError:
        raise MinitronError(f"{flag}: cannot read {text!r} as a fraction such as 5% or 0.05") from None
    fraction = value / 100 if percent else value
    if not (0 <= fraction <= 1 if whole else 0 <= fraction < 1):
        highest = "at most 100%" if whole else "below 100%"
        raise MinitronError(f"{flag}: must be at least 0% and {highest}, got {text!r}")
    return fraction


def parse_dtype(text: str, flag: str = "--dtype") -> str:
    """A dtype name or alias ('bf16', 'fp8', 'float32') -> its canonical torch name."""
    name = str(text).strip().lower().removeprefix("torch.")
    name = DTYPE_ALIASES.get(name, name)
    if name not in DTYPE_BYTES:
        known = ", ".join([*DTYPE_BYTES, *DTYPE_ALIASES])
        raise MinitronError(f"{flag}: unknown dtype {text!r}; known: {known}")
    return name


def dtype_bytes(name: str) -> int:
    return DTYPE_BYTES[parse_dtype(name)]


def byte_unit(size: int | float) -> tuple[str, int]:
    """The largest binary unit that keeps `size` >= 1, and its scale: (GiB, 2**30) for 18.69 GiB."""
    for unit in ("TiB", "GiB", "MiB", "KiB"):
        scale = BYTE_UNITS[unit.lower()]
        if abs(size) >= scale:
            return unit, scale
    return "B", 1


def format_bytes(size: int | float) -> str:
    """Bytes in the largest binary unit that keeps the number >= 1: '18.69 GiB'."""
    unit, scale = byte_unit(size)
    return f"{size / scale:.2f} {unit}" if scale > 1 else f"{int(size)} B"


def format_tokens(tokens: int) -> str:
    """131072 -> '128k', 1048576 -> '1M', 1000 -> '1000'."""
    for suffix in ("M", "k"):
        scale = TOKEN_SUFFIXES[suffix.lower()]
        if tokens >= scale and tokens % scale == 0:
            return f"{tokens // scale}{suffix}"
    return str(tokens)
