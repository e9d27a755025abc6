"""How long `minitron demo` takes, stage by stage, on this machine (README: "under 10 minutes on a 2-core CPU").

Runs the demo in a fresh process (torch's import counts, as it does for a user) and stamps each stage
header (`── score ──`, ...) as it appears on stdout; a stage's time runs to the next header. Writes
JSON with the CPU model (/proc/cpuinfo), the core count, the load average before and after (a busy
machine is not a measurement: check `load_before`) and whether the CPU has native bf16.

    python bench/demo_time.py                       # the demo in a temp dir
    python bench/demo_time.py --json runs/demo_time.json
    python bench/demo_time.py --fresh-clone /path/to/repo   # clone, pip install into a venv, then the demo

With --fresh-clone the install is timed as its own stage (it needs the package index).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

STAGES = ("score", "search", "compare", "prune", "distill", "evaluate", "report")
HEADER = re.compile(r"^[─━-]+\s*(\w+)\s*[─━-]+$")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def cpu_flags() -> set[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def timed_demo(python: str, out: Path, cwd: Path | None = None) -> tuple[dict[str, float], float, int]:
    """Per-stage seconds, total seconds and the exit code of `python -m minitron.cli demo --out OUT`."""
    env = {**os.environ, "COLUMNS": "100"}
    start = time.perf_counter()
    marks: list[tuple[str, float]] = [("start-up", 0.0)]
    proc = subprocess.Popen(
        [python, "-m", "minitron.cli", "demo", "--out", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=cwd, env=env,
    )  # fmt: skip
    assert proc.stdout is not None
    for line in proc.stdout:
        match = HEADER.match(line.strip())
        if match and match[1] in STAGES:
            marks.append((match[1], time.perf_counter() - start))
        sys.stdout.write(line)
    code = proc.wait()
    total = time.perf_counter() - start
    stages = {}
    for (name, at), (_, end) in zip(marks, [*marks[1:], ("end", total)], strict=True):
        stages[name] = round(end - at, 1)
    return stages, round(total, 1), code


def fresh_install(repo: Path, root: Path) -> tuple[str, float]:
    """Clone `repo` and pip install it into a new venv; the venv's python and the seconds it took."""
    start = time.perf_counter()
    clone = root / "clone"
    subprocess.run(["git", "clone", "--quiet", str(repo), str(clone)], check=True)
    subprocess.run([sys.executable, "-m", "venv", str(root / "venv")], check=True)
    python = str(root / "venv" / "bin" / "python")
    subprocess.run([python, "-m", "pip", "install", "--quiet", str(clone)], check=True)
    return python, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", help="write the record here (default: print it only)")
    parser.add_argument("--fresh-clone", help="a repository to clone and install first (timed)")
    args = parser.parse_args()
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="minitron-demo-time-") as tmp:
        root = Path(tmp)
        python, install_s = sys.executable, None
        if args.fresh_clone:
            python, install_s = fresh_install(Path(args.fresh_clone).resolve(), root)
        stages, total, code = timed_demo(python, root / "demo", cwd=root)
    flags = cpu_flags()
    record = {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "native_bf16": bool({"avx512_bf16", "amx_bf16"} & flags),
        "load_before": [round(x, 2) for x in load_before],
        "load_after": [round(x, 2) for x in os.getloadavg()],
        "install_s": None if install_s is None else round(install_s, 1),
        "stages_s": stages,
        "demo_s": total,
        "total_s": round(total + (install_s or 0), 1),
        "exit_code": code,
    }
    text = json.dumps(record, indent=1)
    print(text)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(text + "\n")
    sys.exit(code)


if __name__ == "__main__":
    main()
