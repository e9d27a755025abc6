"""How long `minitron demo` takes, stage by stage, on this machine (README: "under 10 minutes on a 2-core CPU").

Runs the demo in a fresh process (torch's import counts, as it does for a user) and stamps each stage
header (`── score ──`, ...) as it appears on stdout; a stage's time runs to the next header. Writes
JSON with the CPU model (/proc/cpuinfo), the core count, the load average before and after (a busy
machine is not a measurement: check `load_before`) and whether the CPU has native bf16.

    python bench/demo_time.py                       # the demo in a temp dir
    python bench/demo_time.py --json runs/demo_time.json
    python bench/demo_time.py --fresh-clone /path/to/repo   # clone, pip install into a venv, then the demo

With --fresh-clone the install is timed as its own stage: the README's own install command, run in the
clone inside a new venv (it needs the package index; the README pins torch's CPU build, which a bare
`pip install .` would replace by the latest CUDA build).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shlex
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


# A user's shell does not set these; a developer's often does (OMP_NUM_THREADS=1 for the test suite),
# and the demo then runs on one core of two. The record says which were dropped.
THREAD_VARIABLES = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OMP_WAIT_POLICY",
    "GOMP_SPINCOUNT",
    "MINITRON_OPENMP_CHOSEN",
)


def user_env() -> dict[str, str]:
    """This environment without the thread variables: what a user's fresh shell gives the demo."""
    return {k: v for k, v in os.environ.items() if k not in THREAD_VARIABLES}


def timed_demo(python: str, out: Path, cwd: Path | None = None) -> tuple[dict[str, float], float, int]:
    """Per-stage seconds, total seconds and the exit code of `python -m minitron.cli demo --out OUT`,
    run as a user's fresh shell would run it (no thread-count variables)."""
    env = user_env() | {"COLUMNS": "100"}
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


def torch_threads(python: str) -> dict:
    """The intra-op threads torch starts with in the demo's environment, and how they wait
    (minitron/openmp.py chooses; on the machine as it is now, after the demo)."""
    env = user_env()
    code = ("import json, os, minitron, torch; print(json.dumps({'threads': torch.get_num_threads(), "
            "**{k: os.environ[k] for k in ('OMP_WAIT_POLICY', 'GOMP_SPINCOUNT') if k in os.environ}}))")  # fmt: skip
    done = subprocess.run([python, "-c", code], capture_output=True, text=True, env=env, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def readme_install(repo: Path) -> list[str]:
    """The install half of the README's first command (`pip install ... && minitron demo`), as argv."""
    text = (repo / "README.md").read_text()
    block = text.split("```bash\n", 1)[1].split("```", 1)[0]
    install, demo = (part.strip() for part in block.strip().split("&&"))
    if not install.startswith("pip install") or demo != "minitron demo":
        raise SystemExit(f"README's first command is not `pip install ... && minitron demo`: {block!r}")
    return shlex.split(install)


def fresh_install(repo: Path, root: Path) -> tuple[str, float]:
    """Clone `repo`, make a new venv and run the README's install in the clone (as a user would: the
    README pins the CPU build of torch); the venv's python and the seconds it took."""
    start = time.perf_counter()
    clone = root / "clone"
    subprocess.run(["git", "clone", "--quiet", str(repo), str(clone)], check=True)
    subprocess.run([sys.executable, "-m", "venv", str(root / "venv")], check=True)
    python = str(root / "venv" / "bin" / "python")
    pip = readme_install(clone)
    subprocess.run([python, "-m", *pip, "--quiet"], check=True, cwd=clone)
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
        threads = torch_threads(python)
    flags = cpu_flags()
    record = {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "native_bf16": bool({"avx512_bf16", "amx_bf16"} & flags),
        "torch_threads": threads,
        "dropped_env": {k: os.environ[k] for k in THREAD_VARIABLES if k in os.environ},
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
