"""What every benchmark script shares: the machine description and how results are written.

Each benchmark writes ``results/benchmarks/<name>/<name>.json`` holding its figures together
with the exact command and the machine that produced them, so every number in the README can
be traced to a rerunnable command.
"""

from __future__ import annotations

import datetime as _dt
import os
import platform
import shlex
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "results" / "benchmarks"


def machine() -> dict[str, Any]:
    """The machine and software a figure was measured on."""
    import torch

    info: dict[str, Any] = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "gpu": None,
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    try:
        import optuna

        info["optuna"] = optuna.__version__
    except ImportError:  # pragma: no cover - optuna is a core dependency
        pass
    return info


def shown_path(path: Path) -> str:
    """``path`` relative to the repository when inside it (a committed JSON names no home)."""
    try:
        return str(path.resolve().relative_to(REPO))
    except ValueError:
        return str(path)


def command_line() -> str:
    """The command that is running, as a user would retype it from the repository root."""
    return shlex.join(["python", shown_path(Path(sys.argv[0])), *sys.argv[1:]])


def output_dir(name: str, out: str | Path | None) -> Path:
    """``out`` when given, else ``results/benchmarks/<name>``; created."""
    path = Path(out) if out else RESULTS / name
    path.mkdir(parents=True, exist_ok=True)
    return path


def write_result(path: Path, payload: dict[str, Any]) -> Path:
    """Write ``payload`` with the command, machine and date added (atomically); returns the path."""
    from nas.io import write_json

    data = {"command": command_line(), "machine": machine(),
            "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), **payload}
    return write_json(path, data)
