"""Build the built-in text corpus: a fixed snapshot of Python standard-library sources.

The snapshot is shipped inside the package (minitron/assets/corpus/) so results never depend on the
Python version of the machine running minitron; this script only records how it was made. It reads
the standard library of the Python running it (3.11.7 for the shipped snapshot), skips tests,
generated tables and vendored tools, and writes one JSON document per source file, in an order
fixed by the SHA-256 of each path (sorted file order would put whole packages next to each other).

    python scripts/make_corpus.py            # writes minitron/assets/corpus/
"""

from __future__ import annotations

import hashlib
import json
import lzma
import os
import shutil
import sys
import sysconfig
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "minitron" / "assets" / "corpus"
# Tests are noisy duplicates; encodings/pydoc_data are generated tables; the rest are vendored tools.
SKIP_DIRS = {
    "site-packages", "test", "tests", "idle_test", "idlelib", "lib2to3", "pydoc_data",
    "encodings", "ensurepip", "turtledemo", "__pycache__",
}  # fmt: skip


def main() -> None:
    lib = Path(sysconfig.get_paths()["stdlib"])
    files = [p for p in lib.rglob("*.py") if not set(p.relative_to(lib).parts[:-1]) & SKIP_DIRS]
    files = [p for p in files if not p.relative_to(lib).parts[0].startswith("config-")]
    files.sort(key=lambda p: hashlib.sha256(p.relative_to(lib).as_posix().encode()).hexdigest())
    OUT.mkdir(parents=True, exist_ok=True)
    tmp = OUT / "python-stdlib.jsonl.xz.tmp"
    n_chars = 0
    with lzma.open(tmp, "wt", encoding="utf-8", preset=9) as f:
        for p in files:
            text = p.read_text(encoding="utf-8")
            n_chars += len(text)
            f.write(json.dumps({"path": p.relative_to(lib).as_posix(), "text": text}) + "\n")
    os.replace(tmp, OUT / "python-stdlib.jsonl.xz")
    shutil.copyfile(lib / "LICENSE.txt", OUT / "LICENSE-PSF.txt")
    version = ".".join(map(str, sys.version_info[:3]))
    print(f"{len(files)} files, {n_chars:,} characters from Python {version} -> {OUT}")


if __name__ == "__main__":
    main()
