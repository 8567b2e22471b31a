"""The tabular benchmark's table: every point of ``benchmarks/tabular_space.yaml`` evaluated once
with the proxy evaluator, stored one row per point in a CSV file, and looked up by digest.

Used by ``benchmarks/sampler_efficiency.py``, which builds the table and replays samplers on it:

    python benchmarks/sampler_efficiency.py build  --size cpu     # builds results/.../table.csv

``build_table`` evaluates the points missing from the table (resumable: rows are appended and
synced as points finish), then measures every trained point's throughput again in interleaved
rounds (``remeasure_throughput``).  ``read_table``/``write_table`` read and rewrite the CSV;
``Table`` is the lookup the replay uses: rows by digest and the objectives' normalisation over
every feasible row, for hypervolume shares.  ``table_budgets`` names the budgets a table can be
built at (the name is stored in every row).
"""

from __future__ import annotations

import csv
import dataclasses
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO

SPACE = REPO / "benchmarks" / "tabular_space.yaml"
REFERENCE = 1.1  # normalised hypervolume reference point, in every objective


# Fractions of the steps at which the table records the held-out (rung-probe) loss: the rungs of
# the geometric ladders of eta 2, 3 and 4 and the old Pareto rule's (1/4, 1/2), so that the
# replay can judge any of those rung layouts.
PROBES = (1 / 16, 1 / 9, 1 / 4, 1 / 3, 1 / 2)


def table_budgets() -> dict[str, Any]:
    """Budgets a table can be built at, by the name stored in its rows (each probing at :data:`PROBES`)."""
    from evaluators.budget import DEFAULT_BUDGETS

    cpu = DEFAULT_BUDGETS["cpu"]
    # The cpu recipe at 30% of its steps (warm-up scaled too) and half its FID samples: about
    # 7-60 s per point on one thread, so 72 points build in well under an hour on a shared CPU.
    budgets = {"smoke": DEFAULT_BUDGETS["smoke"], "cpu": cpu,
               "cpu-table": dataclasses.replace(cpu.scaled(0.3), fid_samples=128)}
    return {name: dataclasses.replace(b, rungs=PROBES) for name, b in budgets.items()}


def probe_key(step: int) -> str:
    """The column of the held-out loss after ``step`` training steps."""
    return f"loss_at_step_{step}"


# ----- rows and the CSV file ------------------------------------------------------------------
def decision_values(space: Any, spec: Any) -> dict[str, Any]:
    """Each searched decision's value in ``spec`` (``levelN.key`` reads level N; inactive: None)."""
    out: dict[str, Any] = {}
    for name, _decision in space.param_names():
        if name.startswith("level") and "." in name:
            index, key = name.removeprefix("level").split(".", 1)
            level = int(index)
            out[name] = getattr(spec.levels[level], key) if level < len(spec.levels) else None
        elif name == "levels":  # the spec holds the levels themselves; the decision is their count
            out[name] = len(spec.levels)
        else:
            out[name] = getattr(spec, name)
    return out


def columns(space: Any, budget: Any) -> list[str]:
    """The table's header: identity, decisions, outcome, objectives, costs, probed losses, timing."""
    from evaluators.training import rung_steps

    rungs = [probe_key(step) for step in rung_steps(budget)]
    return ["digest", "budget", *[n for n, _ in space.param_names()], "status", "reason", "feasible",
            "val_loss", "fid_proxy", "fid_floor", "kid_mean", "throughput", "throughput_eval", "throughput_rounds",
            "torch_threads", "latency_ms", "params", "macs", *rungs, "steps", "train_seconds", "sampling_seconds",
            "eval_seconds", "wall_seconds"]


def _parse(value: str) -> Any:
    if value == "":
        return None
    if value in ("True", "False"):
        return value == "True"
    try:
        number = float(value)
    except ValueError:
        return value
    return int(number) if number.is_integer() and "." not in value and "e" not in value.lower() else number


def _cell(value: Any) -> Any:
    if isinstance(value, float):  # numpy floats too (repr(np.float64) is not a number)
        return repr(float(value)) if math.isfinite(value) else ""
    return "" if value is None else value


def read_table(path: Path) -> list[dict[str, Any]]:
    """The table's rows with numbers and booleans parsed (empty cells are None)."""
    if not path.is_file():
        return []
    with path.open(newline="") as fh:
        return [{k: _parse(v) for k, v in row.items()} for row in csv.DictReader(fh)]


def write_table(path: Path, rows: list[dict[str, Any]], header: list[str]) -> None:
    """Rewrite the whole table atomically (a kill leaves the old file or the new one)."""
    from nas.io import atomic_writer

    with atomic_writer(path, newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=header, extrasaction="ignore")
        writer.writeheader()
        writer.writerows({k: _cell(r.get(k)) for k in header} for r in rows)


# ----- building -------------------------------------------------------------------------------
def infeasible_keys(space: Any, costs: dict[str, Any]) -> list[str]:
    """Constraint keys that ``costs`` break (only metrics present in ``costs`` are checked)."""
    from nas.front import broken_constraints

    return list(broken_constraints(space.constraint_values(costs)))


def evaluate_point(space: Any, spec: Any, budget: Any, budget_name: str, context: Any) -> dict[str, Any]:
    """One table row: static costs; infeasible -> no training (as the search's gate); else the
    proxy evaluator at ``budget`` (seed 0) with a rung hook that never stops, so the held-out loss
    at every probe step is recorded."""
    from evaluators.proxy import evaluate
    from nas.cost import static_costs

    started = time.perf_counter()
    costs = static_costs(spec)
    row: dict[str, Any] = {"digest": spec.digest(), "budget": budget_name, **decision_values(space, spec),
                           "params": int(costs["params"]), "macs": int(costs["macs"])}
    broken = infeasible_keys(space, costs)
    if broken:
        row.update(status="infeasible", reason="breaks " + ", ".join(broken), feasible=False, steps=0)
    else:
        result = evaluate(spec, budget=budget, context=context, seed=0, rung_hook=lambda *_: None)
        data = result.to_dict()
        for key in ("status", "reason", "val_loss", "fid_proxy", "fid_floor", "kid_mean", "throughput",
                    "latency_ms", "steps", "train_seconds", "sampling_seconds", "eval_seconds"):
            row[key] = data[key]
        row["throughput_eval"] = row["throughput"]  # replaced by remeasure_throughput's median
        row["params"] = result.params if result.params is not None else row["params"]
        for rung in result.rungs:
            row[probe_key(rung["step"])] = rung["val_loss"]
        # Throughput is measured only now: a min_throughput constraint could still break here.
        row["feasible"] = not infeasible_keys(space, {"params": row["params"], "macs": row["macs"],
                                                      "throughput": row["throughput"],
                                                      "latency_ms": row["latency_ms"]})
    row["wall_seconds"] = time.perf_counter() - started
    return row


def interleaved_throughput(specs: list[Any], budget: Any, device: Any, rounds: int) -> dict[str, list[float]]:
    """Each spec's throughput (images/s) measured ``rounds`` times with the gate's own timing,
    every spec once per round in a fresh order (seed 0), by digest.

    The machine is shared: one measurement per point, taken minutes apart, compares points under
    different loads.  Measuring every point once per round, in a fresh order each round, spreads
    the load over all points alike; a median drops a round that hit a burst.
    """
    import torch

    from evaluators.device import Precision
    from nas.gate import ThroughputTiming

    samples: dict[str, list[float]] = {s.digest(): [] for s in specs}
    timing = ThroughputTiming(budget=budget, device=device, precision=Precision.for_device(device))  # the gate's
    rng = np.random.default_rng(0)
    for _ in range(rounds):
        for index in rng.permutation(len(specs)):
            torch.manual_seed(0)
            samples[specs[index].digest()].append(timing(specs[index])["throughput"])
    return samples


def remeasure_throughput(specs: list[Any], rows: list[dict[str, Any]], budget: Any, device: Any,
                         rounds: int) -> None:
    """Set each trained row's ``throughput`` to the median of ``rounds`` interleaved measurements
    (:func:`interleaved_throughput`)."""
    import statistics

    import torch

    from evaluators.contention import timing_threads

    by_digest = {s.digest(): s for s in specs}
    todo = [r for r in rows if r["status"] == "ok" and r["digest"] in by_digest]
    samples = interleaved_throughput([by_digest[r["digest"]] for r in todo], budget, device, rounds)
    for row in todo:
        if row.get("throughput_eval") is None:
            row["throughput_eval"] = row["throughput"]
        row["throughput"] = statistics.median(samples[row["digest"]])
        row["throughput_rounds"] = rounds
        row["torch_threads"] = timing_threads(device) or torch.get_num_threads()


def enumerated_points(space: Any, points: int | None) -> list[Any]:
    """The first ``points`` points of the enumeration of ``space`` (None: all)."""
    specs = list(space.enumerate())
    return specs if points is None else specs[:points]


def drawn_points(space: Any, feasible: int, *, seed: int = 0) -> list[Any]:
    """A fixed draw from ``space``: distinct specs drawn uniformly per decision with ``seed``, in
    draw order, until ``feasible`` of them pass the space's static constraints (params, MACs).

    The draw is a prefix property: asking for more points returns the same points first and
    then new ones, so a table built from a draw grows across runs without changing its rows.
    Points that break a constraint are kept (the table records them as infeasible, as the
    search's gate would) but do not count.
    """
    from nas.cost import static_costs

    feasible_by_digest: dict[str, bool] = {}  # static costs are slow; the restarts reuse them
    out: list[Any] = []
    count, batch = 0, 0
    while count < feasible:
        # A longer sample from the same seed repeats the shorter one first: start over longer.
        batch = max(2 * batch, 64)
        if batch > 1000 * feasible:
            raise SystemExit(f"error: {space.source}: fewer than {feasible} distinct feasible points "
                             f"in {batch // 2} draws")
        out, seen, count = [], set(), 0
        for spec in space.sample(batch, seed=seed):
            if spec.digest() in seen:
                continue
            seen.add(spec.digest())
            out.append(spec)
            if spec.digest() not in feasible_by_digest:
                feasible_by_digest[spec.digest()] = not infeasible_keys(space, static_costs(spec))
            count += feasible_by_digest[spec.digest()]
            if count == feasible:
                break
    return out


def build_table(path: Path, space: Any, *, specs: list[Any], budget_name: str, device: str,
                throughput_rounds: int) -> None:
    """Evaluate the ``specs`` of ``space`` that ``path`` lacks at the budget ``budget_name`` and
    append them (resumable), then measure the trained points' throughput again in
    ``throughput_rounds`` interleaved rounds."""
    import torch

    from evaluators.device import pick_device
    from evaluators.proxy import EvalContext

    budget = table_budgets()[budget_name]
    header = columns(space, budget)
    existing = read_table(path)
    other = {r["budget"] for r in existing} - {budget_name}
    if other:
        raise SystemExit(f"error: {path} holds rows at budget {sorted(other)}, not {budget_name!r}; "
                         "use another --out")
    if existing and [k for k in header if k.startswith("loss_at_step_")] != [
            k for k in existing[0] if k.startswith("loss_at_step_")]:
        raise SystemExit(f"error: {path} was built with other probe steps (an older version of this script); "
                         "move it away to build a new table, or use another --out")
    if existing and list(existing[0]) != header:
        write_table(path, existing, header)  # the same probes, columns added since
    done = {r["digest"] for r in existing}
    todo = [s for s in specs if s.digest() not in done]
    print(f"{space.name}: {len(specs)} points, {len(done)} already in {path}, {len(todo)} to evaluate at "
          f"budget {budget_name} ({budget.steps} steps, {budget.fid_samples} FID samples); "
          f"torch threads {torch.get_num_threads()}", flush=True)
    started = time.perf_counter()
    context = EvalContext.load(dataset=space.data.dataset, image_size=space.data.image_size,
                               channels=space.data.channels, device=device, seed=0) if todo else None
    # The real-vs-real floor identifies the FID reference a row was scored against: rows scored
    # against another one (another classifier, e.g. an older cache version) are not comparable.
    floors = {r["fid_floor"] for r in existing if r.get("fid_floor") is not None}
    if context is not None and context.reference is not None and floors and budget.fid_samples >= 2:
        floor = context.reference.floor(budget.fid_samples, seed=0)  # as EvalContext.prepare (cached)
        if not any(math.isclose(floor, f, rel_tol=1e-9) for f in floors):
            raise SystemExit(f"error: {path} was scored against another FID reference (floor {sorted(floors)}, "
                             f"now {floor}); move it away to build a new table, or use another --out")
    new_file = not path.is_file() or path.stat().st_size == 0
    with path.open("a", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=header, extrasaction="raise")
        if new_file:
            writer.writeheader()
        for i, spec in enumerate(todo, 1):
            row = evaluate_point(space, spec, budget, budget_name, context)
            writer.writerow({k: _cell(row.get(k)) for k in header})
            fh.flush()
            os.fsync(fh.fileno())  # a killed build keeps every finished row
            print(f"[{i}/{len(todo)}] {row['digest'][:10]} {row['status']:>10} {row['wall_seconds']:6.1f} s  "
                  f"val_loss {row.get('val_loss')}  fid {row.get('fid_proxy')}  thr {row.get('throughput')}",
                  flush=True)
    print(f"built {len(todo)} points in {time.perf_counter() - started:.0f} s", flush=True)
    rows = read_table(path)
    if any(r["status"] == "ok" and r.get("throughput_rounds") != throughput_rounds for r in rows):
        started = time.perf_counter()
        remeasure_throughput(specs, rows, budget, pick_device(device), throughput_rounds)
        write_table(path, rows, header)
        print(f"throughput: median of {throughput_rounds} interleaved rounds, "
              f"{time.perf_counter() - started:.0f} s", flush=True)


# ----- lookup ---------------------------------------------------------------------------------
def no_skill_scores(space: Any, budget_name: str, *, device: str = "cpu") -> Any:
    """``spec -> scores`` of the no-skill point at the table's budget (what the search records for
    an infeasible candidate's unmeasured objectives; ``evaluators.no_skill``); loads the data and
    the FID reference once."""
    import functools

    from evaluators.no_skill import no_skill_scores as scores
    from evaluators.proxy import EvalContext

    data = space.data
    context = EvalContext.load(dataset=data.dataset, image_size=data.image_size, channels=data.channels,
                               device=device, seed=0)
    return functools.partial(scores, budget=table_budgets()[budget_name], context=context)


def stopped_at_rung(budget: Any, losses: dict[str, Any], rung_hook: Any) -> Any:
    """Run ``rung_hook`` at each rung of ``budget`` (the replayed rung layout; None: no rungs) with
    the held-out loss ``losses`` holds at that step (:func:`probe_key`); the PRUNED
    :class:`evaluators.proxy.EvalResult` of the first rung where it says stop (the steps up to it
    spent), else None."""
    from evaluators.proxy import EvalResult
    from evaluators.training import rung_steps

    for rung, step in enumerate(rung_steps(budget) if budget is not None else []):
        if losses.get(probe_key(step)) is None:
            raise SystemExit(f"error: the table holds no held-out loss at step {step}; its probes are at "
                             f"{[k for k in losses if k.startswith('loss_at_step_')]}")
        why = rung_hook(rung, step, losses[probe_key(step)]) if rung_hook is not None else None
        if why:
            return EvalResult(status="pruned", reason=f"stopped at rung {rung} (step {step}): {why}", steps=step)
    return None


@dataclass(frozen=True)
class TableLookup:
    """The table in place of live measurement and training, for :class:`nas.trial_runner.TrialRunner`.

    ``gate()`` is the search's own gate (:func:`nas.gate.run_gate`) over the rows' recorded
    params and MACs, then throughput and latency; ``evaluate`` returns a row as an evaluation
    result, calling the rung hook at each rung of ``budget`` (the replayed rung layout) with the
    loss the table recorded at that step (a hook that says stop ends the trial there, PRUNED,
    having cost the steps up to that rung).  A point missing from a partial
    (quick) table has no figures and is recorded ``error``.
    """

    rows: dict[str, dict[str, Any]]
    no_skill: Any  # spec -> the no-skill scores (no_skill_scores below)
    budget: Any = None  # the replayed rung layout (its rungs must be among the table's probes)

    def row(self, digest: str) -> dict[str, Any] | None:
        """The recorded row of the point with ``digest`` (None: not in the table)."""
        return self.rows.get(digest)

    def static(self, spec: Any) -> dict[str, Any]:
        """The row's params and MACs (nothing for a missing point)."""
        row = self.rows.get(spec.digest())
        return {} if row is None else {"params": row["params"], "macs": row["macs"]}

    def timing(self, spec: Any) -> dict[str, Any]:
        """The row's throughput (the interleaved re-measurement's median) and latency."""
        row = self.rows.get(spec.digest())
        if row is None or row["throughput"] is None:
            return {}
        return {"throughput": row["throughput"], "latency_ms": row["latency_ms"]}

    def gate(self, space: Any) -> Any:
        """The search's gate over this table's figures."""
        from nas.gate import Gate

        return Gate(space=space, static=self.static, timing=self.timing)

    def runner(self, space: Any, study: Any, *, rule: Any = None, budget_name: str = "") -> Any:
        """The search's trial runner, answered from this table."""
        from nas.trial_runner import TrialRunner

        return TrialRunner(space=space, study=study, gate=self.gate(space), evaluate=self.evaluate,
                           no_skill=self.no_skill, rule=rule, seed=0, budget_name=budget_name)

    def evaluate(self, spec: Any, *, rung_hook: Any = None, artifacts_dir: Any = None) -> Any:
        """The row as an :class:`evaluators.proxy.EvalResult` (see the class docstring)."""
        from evaluators.proxy import EvalResult

        row = self.rows.get(spec.digest())
        if row is None:
            return EvalResult(status="error", reason="not in the table")
        stopped = stopped_at_rung(self.budget, row, rung_hook)
        if stopped is not None:
            return stopped
        result = EvalResult(status=row["status"], reason=str(row.get("reason") or ""), val_loss=row.get("val_loss"),
                            fid_proxy=row.get("fid_proxy"), steps=int(row.get("steps") or 0))
        result.train_seconds = float(row.get("train_seconds") or 0.0)
        result.eval_seconds = float(row.get("eval_seconds") or 0.0)
        return result


@dataclass
class Table:
    """The table as the replay needs it: rows by digest and the normalisation of objectives."""

    rows: dict[str, dict[str, Any]]
    lo: np.ndarray
    scale: np.ndarray
    true_hv: float
    signs: np.ndarray
    budget_name: str

    @classmethod
    def load(cls, rows: list[dict[str, Any]], space: Any) -> Table:
        """Index ``rows`` by digest; normalise objectives (minimised) over the feasible ok rows."""
        signs = np.array([1.0 if o.direction == "minimize" else -1.0 for o in space.objectives])
        good = [r for r in rows if r["status"] == "ok" and r["feasible"]]
        if not good:
            raise SystemExit("error: the table has no feasible evaluated point")
        points = np.array([[r[o.metric] for o in space.objectives] for r in good], dtype=float) * signs
        lo, hi = points.min(axis=0), points.max(axis=0)
        scale = np.where(hi > lo, hi - lo, 1.0)
        table = cls(rows={r["digest"]: r for r in rows}, lo=lo, scale=scale, true_hv=0.0, signs=signs,
                    budget_name=str(rows[0]["budget"]))
        table.true_hv = table.hypervolume(points * signs)
        return table

    def hypervolume(self, values: np.ndarray) -> float:
        """Hypervolume of objective ``values`` (N, M, study orientation) in the normalised space."""
        from nas.front import hypervolume

        if len(values) == 0:
            return 0.0
        norm = (np.asarray(values, dtype=float) * self.signs - self.lo) / self.scale
        return hypervolume(norm, np.full(norm.shape[1], REFERENCE))
