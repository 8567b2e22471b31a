"""Search overhead: the share of a search's wall time not spent in candidate compute, per backend and budget.

    python benchmarks/overhead.py --size quick     # smoke budget, 2 trials, optuna and ray (~1 minute here)
    python benchmarks/overhead.py --size cpu       # smoke x 8 trials and cpu x 8 trials, both backends
    python benchmarks/overhead.py --size gpu       # gpu budget x 4 trials, --device auto (needs a GPU;
                                                   # meant to fit 10 minutes on one H100; never run here)

Each run is the search a user runs, as a fresh process timed from launch to exit::

    python -m nas.search --space light.yaml --budget B --trials N --seed S --sampler random \\
        --out <tmp> --device cpu [--backend ray --max-concurrent W | --workers W]

with Python's default bytecode caching, as a user's installation has (``--as-is-env`` keeps this
machine's ``PYTHONDONTWRITEBYTECODE``; see :func:`search_env`), after one untimed one-trial
search per backend (a machine's first search compiles packages that ship without bytecode),

then its study (``<tmp>/light.db``) is opened and the wall time split into

* compute: per trial ``train_seconds + sampling_seconds + timing_seconds`` (training steps, FID
  sampling, cost measurement inside the evaluator; see ``evaluators/proxy.py``) plus
  ``gate_timing_seconds``, the cheap gate's throughput measurement (an objective; the evaluator
  then runs with ``measure=False``);
* evaluator overhead: ``eval_seconds`` minus that compute (model build, held-out loss, feature
  extraction, bookkeeping inside :func:`evaluators.proxy.evaluate`), of which ``scoring_seconds``
  scores (the held-out losses at the rungs and at the end, the FID proxy's features and distances);
* other: ``wall - sum(eval_seconds) / workers``: process start and imports, data and FID
  reference loading, the sampler, storage writes, the cheap gate, artifacts and reports, and for
  Ray its start-up, actor start-up and shutdown.

Compute and evaluator overhead are worker-seconds; divided by ``workers`` they and "other" add
up to the wall time.  ``overhead_share = 1 - compute / (wall * workers)``.  Trials that reuse an
earlier trial's result (``duplicate_of``) copy its timing attributes, so they count no compute.

Fixed start-up estimate: the process wall minus the span from the first trial's start to the
last trial's end (trial ``datetime_start``/``datetime_complete``).  It includes what happens after
the last trial (reports, Ray shutdown) too.  It is not the same cut for both backends: the Optuna
backend loads data and the FID reference before its first trial, whereas Ray asks for a trial
first and then starts a worker actor that loads them, inside the span.  ``overhead_per_trial_s``
is the rest, ``(span * workers - compute) / trials``.  ``tool_overhead_share`` and
``tool_overhead_per_trial_s`` are the same figures with scoring counted as candidate work rather
than overhead: what the tool itself costs.  Both cuts are reported.

``--workers`` (default 1) is the number of trials running at once in both backends (``--workers``
of the Optuna backend, ``--max-concurrent`` of Ray), so that both are compared at the same
concurrency; Ray's own default on this machine would be one trial per core.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO, output_dir, write_result

NAME = "overhead"
BACKENDS = ("optuna", "ray")
BUDGETS = ("smoke", "cpu", "gpu")
SAMPLER = "random"  # the cheapest proposal step: what remains is the search machinery itself
# Per size: trials per budget (the default budgets are the keys, in order) and the device.
SIZES: dict[str, dict[str, Any]] = {
    "quick": {"trials": {"smoke": 2}, "device": "cpu"},
    "cpu": {"trials": {"smoke": 8, "cpu": 8}, "device": "cpu"},
    "gpu": {"trials": {"gpu": 4}, "device": "auto"},
}
# Trials for a budget named with --budgets that the size does not list.
DEFAULT_TRIALS = {"smoke": 8, "cpu": 8, "gpu": 4}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line; bad input is an argparse error."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=sorted(SIZES), default="quick")
    parser.add_argument("--out", default=None, help=f"output directory (default results/benchmarks/{NAME}/)")
    parser.add_argument("--space", default="light.yaml")
    parser.add_argument("--backends", nargs="+", choices=BACKENDS, default=list(BACKENDS))
    parser.add_argument("--budgets", nargs="+", choices=BUDGETS, default=None,
                        help="default: the size's budgets")
    parser.add_argument("--trials", type=int, default=None, help="trials per run (default: the size's)")
    parser.add_argument("--workers", type=int, default=1, help="trials at once, in both backends")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default=None, help="default: the size's (cpu; auto for gpu)")
    parser.add_argument("--as-is-env", action="store_true",
                        help="keep this machine's PYTHONDONTWRITEBYTECODE (default: Python's bytecode caching, "
                             "as a user's installation has)")
    args = parser.parse_args(argv)
    if args.trials is not None and args.trials < 1:
        parser.error("--trials must be at least 1")
    if args.workers < 1:
        parser.error("--workers must be at least 1")
    return args


def search_command(*, backend: str, space: str, budget: str, trials: int, seed: int, workers: int, device: str,
                   out: Path) -> list[str]:
    """The ``nas.search`` command line of one run."""
    cmd = [sys.executable, "-m", "nas.search", "--space", space, "--budget", budget, "--trials", str(trials),
           "--seed", str(seed), "--sampler", SAMPLER, "--out", str(out), "--device", device]
    if backend == "ray":
        cmd += ["--backend", "ray", "--max-concurrent", str(workers)]
    else:
        cmd += ["--workers", str(workers)]
    return cmd


def search_env(bytecode_cache: bool) -> dict[str, str]:
    """The environment of the timed searches: a private local Ray (no token), and with
    ``bytecode_cache`` Python's default bytecode caching.  Some machines (this project's among
    them) set ``PYTHONDONTWRITEBYTECODE=1``, which makes every process compile the project's own
    modules again (about 1.6 s of start-up here); a user's installation caches them after the
    first run.  The project's modules are compiled into their ``__pycache__`` folders (ignored by
    git) before the first timed run; installed packages have theirs already."""
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    if bytecode_cache:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        subprocess.run([sys.executable, "-m", "compileall", "-q", "nas", "evaluators"], cwd=REPO, env=env,
                       capture_output=True, check=True)
    return env


def timed_search(cmd: list[str], env: dict[str, str]) -> float:
    """Run ``cmd`` from the repository root in ``env``; its wall seconds from launch to exit (raises on failure)."""
    started = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-4000:])
        raise RuntimeError(f"search failed with exit code {proc.returncode}: {' '.join(cmd)}")
    return wall


def load_trials(out: Path) -> list[Any]:
    """The trials of the one study the search left in ``out``."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    db = next(out.glob("*.db"))
    study = optuna.load_study(study_name=db.stem, storage=f"sqlite:///{db}")
    return study.get_trials(deepcopy=False)


def trial_record(trial: Any) -> dict[str, Any]:  # an optuna FrozenTrial
    """One trial's timing: compute, eval seconds (zero for a reused result) and its span."""
    attrs = trial.user_attrs
    reused = attrs.get("duplicate_of") is not None
    # The gate's throughput timing measures an objective (the evaluator then skips its own), so it
    # is candidate compute; it happens outside the evaluator, so it is added to both sums.
    gate = float(attrs.get("gate_timing_seconds") or 0.0)
    compute = 0.0 if reused else gate + sum(float(attrs.get(k) or 0.0)
                                            for k in ("train_seconds", "sampling_seconds", "timing_seconds"))
    evaluated = 0.0 if reused else gate + float(attrs.get("eval_seconds") or 0.0)
    # Scoring (held-out losses at the rungs and at the end, FID features and distances) is inside
    # the evaluator's overhead above; it is also reported on its own, for the tool-overhead cut.
    scoring = 0.0 if reused else float(attrs.get("scoring_seconds") or 0.0)
    span = None
    if trial.datetime_start is not None and trial.datetime_complete is not None:
        span = (trial.datetime_complete - trial.datetime_start).total_seconds()
    return {"number": trial.number, "state": trial.state.name, "status": attrs.get("status", trial.state.name),
            "duplicate_of": attrs.get("duplicate_of"), "compute_s": compute, "scoring_s": scoring, "eval_s": evaluated,
            # Time the trial was open outside the evaluator: suggest, gate, storage, artifacts
            # (and for Ray, a new actor's start-up and data loading).
            "outside_eval_s": None if span is None else span - evaluated, "span_s": span}


def decompose(trials: list[Any], *, wall: float, workers: int) -> dict[str, Any]:
    """Split ``wall`` of a search with ``trials`` into compute, evaluator overhead and other."""
    records = [trial_record(t) for t in trials]
    compute = sum(r["compute_s"] for r in records)
    scoring = sum(r["scoring_s"] for r in records)
    evaluated = sum(r["eval_s"] for r in records)
    capacity = wall * workers
    timed = [t for t in trials if t.datetime_start is not None and t.datetime_complete is not None]
    span = None
    if timed:
        span = (max(t.datetime_complete for t in timed) - min(t.datetime_start for t in timed)).total_seconds()
    return {
        "trials": len(records),
        "wall_s": wall,
        "compute_s": compute,
        "evaluator_overhead_s": evaluated - compute,
        "scoring_s": scoring,
        "other_s": wall - evaluated / workers,
        "compute_share": compute / capacity,
        "evaluator_overhead_share": (evaluated - compute) / capacity,
        "other_share": 1.0 - evaluated / capacity,
        "overhead_share": 1.0 - compute / capacity,
        "trial_span_s": span,
        "fixed_startup_s": None if span is None else wall - span,
        # "other" inside the trials' span: sampler, storage, gate, artifacts (Ray: actor start-up).
        "other_in_span_s": None if span is None else span - evaluated / workers,
        "overhead_per_trial_s": None if span is None or not records else (span * workers - compute) / len(records),
        # The tool's own cost: the same, with scoring the objectives counted as candidate work.
        "tool_overhead_share": 1.0 - (compute + scoring) / capacity,
        "tool_overhead_per_trial_s": None if span is None or not records
        else (span * workers - compute - scoring) / len(records),
        "statuses": dict(Counter(r["status"] for r in records)),
        "per_trial": records,
    }


def markdown_table(runs: list[dict[str, Any]]) -> str:
    """The runs as a markdown table (seconds; shares in percent)."""

    def num(value: float | None, fmt: str = ".1f") -> str:
        return "-" if value is None else format(value, fmt)

    lines = [("| backend | budget | trials | wall s | compute s | evaluator overhead s (of it scoring) | other s "
              "| overhead share | fixed start-up s | overhead per trial s | tool share / per trial s, scoring as "
              "compute | statuses |"),
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in runs:
        statuses = ", ".join(f"{k} {v}" for k, v in sorted(r["statuses"].items()))
        lines.append(f"| {r['backend']} | {r['budget']} | {r['trials']} | {num(r['wall_s'])} | {num(r['compute_s'])} "
                     f"| {num(r['evaluator_overhead_s'])} ({num(r['scoring_s'])}) | {num(r['other_s'])} "
                     f"| {r['overhead_share']:.1%} | {num(r['fixed_startup_s'])} "
                     f"| {num(r['overhead_per_trial_s'], '.2f')} "
                     f"| {r['tool_overhead_share']:.1%} / {num(r['tool_overhead_per_trial_s'], '.2f')} | {statuses} |")
    return "\n".join(lines)


def plot(runs: list[dict[str, Any]], path: Path) -> Path:
    """Stacked bars per run, in wall-clock seconds: compute / evaluator overhead / other (split into
    the part inside the trials' span and the fixed start-up and shutdown)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"{r['backend']}\n{r['budget']} x{r['trials']}" for r in runs]
    parts = [("compute (train, FID sampling, timing)", "compute_s", "tab:green"),
             ("evaluator overhead (build, held-out loss, features)", "evaluator_overhead_s", "tab:orange"),
             ("other during trials (sampler, storage, gate, artifacts; Ray: worker start-up)", "other_in_span_s",
              "tab:blue"),
             ("fixed start-up and shutdown (imports, data, Ray, reports)", "fixed_startup_s", "tab:gray")]
    fig, ax = plt.subplots(figsize=(max(5.0, 1.6 * len(runs) + 3), 5.2))
    bottom = [0.0] * len(runs)
    for label, key, color in parts:
        # Worker-seconds to wall seconds, so that each bar's height is the run's wall time.
        per_worker = key in ("compute_s", "evaluator_overhead_s")
        heights = [_segment(r, key) / (r["workers"] if per_worker else 1) for r in runs]
        ax.bar(labels, heights, bottom=bottom, label=label, color=color)
        bottom = [b + h for b, h in zip(bottom, heights, strict=True)]
    for i, r in enumerate(runs):
        ax.annotate(f"{r['overhead_share']:.0%} overhead", (i, bottom[i]), ha="center", va="bottom", fontsize=8)
    ax.set_ylabel("wall seconds")
    ax.set_title("Search wall time: candidate compute vs overhead")
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.15), ncol=1, frameon=False)
    ax.set_ylim(0, max(bottom) * 1.1 if runs else 1)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _segment(run: dict[str, Any], key: str) -> float:
    """A bar segment's seconds; without trial times all of "other" shows as fixed."""
    if run["trial_span_s"] is None and key in ("other_in_span_s", "fixed_startup_s"):
        return run["other_s"] if key == "fixed_startup_s" else 0.0
    return run[key]


def main(argv: list[str] | None = None) -> int:
    """Run every (backend, budget) search, write overhead.json and overhead.png, print the table."""
    args = parse_args(argv)
    size = SIZES[args.size]
    budgets = args.budgets or list(size["trials"])
    device = args.device or size["device"]
    out_dir = output_dir(NAME, args.out)
    runs = []
    started = time.perf_counter()
    env = search_env(not args.as_is_env)
    # Untimed one-trial searches first, one per backend: a machine's first search compiles
    # installed packages that ship without bytecode and fills the disk cache, once per machine.
    for backend in args.backends:
        with tempfile.TemporaryDirectory(prefix=f"overhead-warm-up-{backend}-") as tmp:
            timed_search(search_command(backend=backend, space=args.space, budget="smoke", trials=1, seed=args.seed,
                                        workers=1, device=device, out=Path(tmp)), env)
    for budget in budgets:
        trials = args.trials or size["trials"].get(budget, DEFAULT_TRIALS[budget])
        for backend in args.backends:
            with tempfile.TemporaryDirectory(prefix=f"overhead-{backend}-{budget}-") as tmp:
                cmd = search_command(backend=backend, space=args.space, budget=budget, trials=trials,
                                     seed=args.seed, workers=args.workers, device=device, out=Path(tmp))
                wall = timed_search(cmd, env)
                parts = decompose(load_trials(Path(tmp)), wall=wall, workers=args.workers)
            runs.append({"backend": backend, "budget": budget, "workers": args.workers, **parts})
            print(f"{backend} {budget}: {trials} trials, wall {wall:.1f} s, overhead {parts['overhead_share']:.1%}",
                  file=sys.stderr)
    table = markdown_table(runs)
    write_result(out_dir / f"{NAME}.json", {
        "size": args.size, "space": args.space, "sampler": SAMPLER, "seed": args.seed, "device": device,
        "workers": args.workers, "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "bytecode_cache": not args.as_is_env,
        "total_seconds": time.perf_counter() - started, "runs": runs, "table": table,
    })
    plot(runs, out_dir / f"{NAME}.png")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
