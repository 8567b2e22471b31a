"""Does a busy machine corrupt the measurements?  Throughput ranks and evaluation time, quiet and loaded.

    python benchmarks/load_robustness.py --size cpu     # the committed figures (about 8 minutes)
    python benchmarks/load_robustness.py --size quick   # structure check (the test suite)

K feasible ``light.yaml`` architectures (``--space``; seeded) are timed as the search's gate times them
(``nas.gate.ThroughputTiming``: one CPU thread, repeats of at least 50 ms, contended repeats left
out) on a quiet machine, and while one other process spins on one core, pinned there with its CPU
affinity: after a warm-up pass, quiet and loaded rounds alternate (3 each), and each figure is the
median over its rounds.  Beside that, the same architectures are timed the way the search did
before (torch's default thread count, the plain median of the repeats), quiet and loaded, to show
what the policy changes.  Reported: the Spearman rank correlation of throughput between quiet and
loaded for both ways, and each architecture's loaded/quiet ratio.  Then the README's reference
candidate (``nas.space sample light.yaml --seed 0``) is evaluated with ``python -m evaluators`` at
the ``cpu`` budget (its thread policy choosing threads from the free cores), quiet and loaded, and
the wall times compared.  Writes ``load_robustness.json`` and a plot under
``results/benchmarks/load_robustness/``.  Nothing else may run on the machine meanwhile.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing as mp
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO, output_dir, write_result
from proxy_fidelity import pick_architectures

NAME = "load_robustness"


@dataclass(frozen=True)
class Size:
    """How big a run is."""

    architectures: int
    budget: str  # the evaluation's budget
    rounds: int  # quiet/loaded timing rounds, alternating


SIZES = {"quick": Size(architectures=2, budget="smoke", rounds=1),
         "cpu": Size(architectures=10, budget="cpu", rounds=3)}


def _spin(core: int) -> None:
    """The load: one process that keeps one core busy (pinned to it)."""
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {core})
    while True:
        pass


class BusyCore:
    """A context that keeps the machine's last core busy with another process."""

    def __enter__(self) -> BusyCore:
        core = max(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 0
        self.proc = mp.get_context("spawn").Process(target=_spin, args=(core,), daemon=True)
        self.proc.start()
        time.sleep(1.0)  # let it reach full speed
        return self

    def __exit__(self, *exc: object) -> None:
        self.proc.terminate()
        self.proc.join()


def time_all(specs: list[Any], budget: Any, *, policy: bool) -> list[float]:
    """Throughput of each spec: the gate's way (``policy``), or torch's default threads and the plain median."""
    import torch

    from evaluators.device import Precision
    from evaluators.throughput import measure_throughput
    from nas.gate import ThroughputTiming
    from nas.unet import build_unet

    device = torch.device("cpu")
    timing = ThroughputTiming(budget=budget, device=device, precision=Precision.for_device(device))
    out = []
    for spec in specs:
        torch.manual_seed(0)
        if policy:
            out.append(timing(spec)["throughput"])
        else:
            report = measure_throughput(build_unet(spec), input_shape=(spec.in_channels, spec.image_size,
                                                                       spec.image_size),
                                        batch_size=budget.throughput_batch, device=device, repeats=5, warmup=1)
            out.append(report.images_per_s_raw)
    return out


def evaluate_wall(spec: Any, budget_name: str) -> dict[str, Any]:
    """Wall seconds of ``python -m evaluators`` on ``spec`` (a fresh process, as a user runs it)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "spec.yaml"
        path.write_text(spec.to_yaml())
        started = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "evaluators", "--config", str(path), "--budget", budget_name,
                               "--device", "cpu", "--json"], cwd=REPO, capture_output=True, text=True, check=False)
        wall = time.perf_counter() - started
    if proc.returncode not in (0, 1):
        raise SystemExit(f"evaluator failed: {proc.stderr[-2000:]}")
    data = json.loads(proc.stdout)
    return {"wall_seconds": wall, "status": data["status"], "train_seconds": data["train_seconds"],
            "eval_seconds": data["eval_seconds"]}


def spearman(x: list[float], y: list[float]) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(x, y).statistic)


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4.5), dpi=110)
    for key, label, marker in (("policy", "gate (1 thread, contended repeats dropped)", "o"),
                               ("default", "before (default threads, plain median)", "x")):
        quiet, loaded = result["throughput"][key]["quiet"], result["throughput"][key]["loaded"]
        ax.scatter(quiet, loaded, marker=marker, label=f"{label}: Spearman {result['spearman'][key]:.2f}")
    lo = min(min(v) for k in result["throughput"].values() for v in k.values())
    hi = max(max(v) for k in result["throughput"].values() for v in k.values())
    ax.plot([lo, hi], [lo, hi], color="grey", linewidth=0.8, linestyle="--")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("throughput, quiet machine (images/s)")
    ax.set_ylabel("throughput, one core busy (images/s)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=list(SIZES), default="cpu")
    parser.add_argument("--out", default=None, help=f"output folder (default results/benchmarks/{NAME})")
    parser.add_argument("--space", default="light.yaml",
                        help="the space the architectures and the evaluated candidate come from")
    args = parser.parse_args(argv)
    from nas.space import load_space

    size = SIZES[args.size]
    out = output_dir(NAME, args.out)
    space = load_space(args.space)
    budget = space.budgets[size.budget]
    specs = pick_architectures(args.space, size.architectures, seed=1)
    # The space's first sample (for light.yaml the README's reference candidate, as evaluator_timing.py).
    evaluated = space.sample(1, seed=0)[0]
    started = time.perf_counter()
    for key in ("policy", "default"):  # warm-up: the first timings in a process pay one-time costs
        time_all(specs, budget, policy=key == "policy")
    rounds: dict[str, dict[str, list[list[float]]]] = {"policy": {"quiet": [], "loaded": []},
                                                        "default": {"quiet": [], "loaded": []}}
    walls: dict[str, dict[str, Any]] = {}
    # Phases alternate (quiet, loaded, quiet, loaded) so that drift in the machine's speed over the
    # run affects both alike; each architecture's figure is its median over the rounds.
    for phase in [p for _ in range(size.rounds) for p in ("quiet", "loaded")]:
        with BusyCore() if phase == "loaded" else contextlib.nullcontext():
            for key in ("policy", "default"):
                rounds[key][phase].append(time_all(specs, budget, policy=key == "policy"))
                print(f"{phase:>6} {key:>7}: " + ", ".join(f"{v:.0f}" for v in rounds[key][phase][-1]), flush=True)
            if phase not in walls:
                walls[phase] = evaluate_wall(evaluated, size.budget)
                print(f"{phase:>6} evaluation: {walls[phase]['wall_seconds']:.1f} s wall", flush=True)
    throughput = {key: {phase: [statistics.median(r[i] for r in runs) for i in range(len(specs))]
                        for phase, runs in phases.items()} for key, phases in rounds.items()}
    result: dict[str, Any] = {
        "size": args.size, "space": args.space, "architectures": [s.digest() for s in specs], "budget": size.budget,
        "evaluated": evaluated.digest(),
        "cores": os.cpu_count(), "load": "one process spinning, pinned to the last core",
        "throughput": throughput, "rounds": rounds,
        "spearman": {k: spearman(v["quiet"], v["loaded"]) for k, v in throughput.items()},
        "loaded_over_quiet": {k: [b / a for a, b in zip(v["quiet"], v["loaded"], strict=True)]
                              for k, v in throughput.items()},
        "evaluation": walls,
        "evaluation_slowdown": walls["loaded"]["wall_seconds"] / walls["quiet"]["wall_seconds"],
        "seconds": time.perf_counter() - started,
    }
    write_result(out / f"{NAME}.json", result)
    plot(result, out / f"{NAME}.png")
    print(f"throughput Spearman quiet vs loaded: gate {result['spearman']['policy']:.3f}, "
          f"before {result['spearman']['default']:.3f}; evaluation loaded/quiet {result['evaluation_slowdown']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
