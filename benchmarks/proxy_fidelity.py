"""Proxy fidelity: does the brief proxy rank architectures the way 8x longer training does?

    python benchmarks/proxy_fidelity.py --size cpu      # the committed figures (about 1.5 h on 2 cores)
    python benchmarks/proxy_fidelity.py --size quick    # structure check, well under a minute

K feasible architectures are sampled from ``light.yaml`` (seeded).  Each is trained and scored

* at the proxy budget (the search's default: ``cpu`` here), recording the held-out loss at every
  rung on the way (the early-stopping signal);
* at a quarter of it (a cheaper proxy candidate);
* at the reference budget: the same recipe for ``nas.train.TRAIN_MULTIPLIER`` (8) times the steps,
  which is what ``python -m nas.train`` runs by default;

and a subset is trained at the proxy budget with extra seeds to measure seed noise.  Reported:
Spearman and Kendall rank correlations between each proxy and the reference, for the held-out
loss and for the FID proxy; the seed-noise share of the proxy's spread across architectures; a
scatter plot.  Every finished evaluation is appended to ``runs.jsonl`` in the output folder, so a
killed run resumes where it stopped.

Sizes: ``quick`` (3 architectures at the ``smoke`` budget), ``cpu`` (12 at ``cpu``, 4 of them with
3 seeds), ``gpu`` (24 at the ``cpu`` recipe on CUDA, 6 with 3 seeds; meant to finish within 10
minutes on one H100, not yet run there).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import output_dir, write_result

NAME = "proxy_fidelity"
KINDS = ("proxy", "quarter", "quarter_distill", "reference")


@dataclass(frozen=True)
class Size:
    """How big a run is."""

    budget: str  # the proxy budget, a name in DEFAULT_BUDGETS
    architectures: int
    noise_architectures: int  # the first N architectures get extra seeds
    seeds: int  # seeds per noise architecture (seed 0 included)
    workers: int
    device: str
    threads: int = 0  # torch threads per worker; 0 splits the cores between the workers


SIZES = {
    "quick": Size(budget="smoke", architectures=3, noise_architectures=2, seeds=2, workers=1, device="cpu"),
    "cpu": Size(budget="cpu", architectures=12, noise_architectures=4, seeds=3, workers=2, device="cpu"),
    "gpu": Size(budget="cpu", architectures=24, noise_architectures=6, seeds=3, workers=1, device="cuda"),
}


@dataclass(frozen=True)
class Job:
    """One evaluation: an architecture, a kind of budget and a training seed."""

    index: int
    kind: str  # proxy | quarter | quarter_distill | reference
    seed: int

    @property
    def key(self) -> str:
        return f"{self.index}:{self.kind}:{self.seed}"


# ----- selection --------------------------------------------------------------------------------

def pick_architectures(space_path: str, count: int, seed: int) -> list[Any]:
    """``count`` distinct architectures of the space that meet its constraints (seeded draw)."""
    from nas.cost import static_costs
    from nas.front import constraints_met
    from nas.space import load_space

    space = load_space(space_path)
    chosen, seen = [], set()
    for spec in space.sample(50 * count, seed=seed):
        if spec.digest() in seen:
            continue
        if constraints_met(space.constraint_values(static_costs(spec)).values()):
            seen.add(spec.digest())
            chosen.append(spec)
        if len(chosen) == count:
            return chosen
    raise SystemExit(f"{space_path}: only {len(chosen)} feasible architectures in {50 * count} draws")


def plan_jobs(size: Size, *, distill: bool = False) -> list[Job]:
    """Every evaluation, longest first so that parallel workers finish together; with ``distill``
    also the quarter budget trained toward the teacher."""
    jobs = [Job(i, "reference", 0) for i in range(size.architectures)]
    jobs += [Job(i, "proxy", 0) for i in range(size.architectures)]
    jobs += [Job(i, "proxy", s) for i in range(size.noise_architectures) for s in range(1, size.seeds)]
    jobs += [Job(i, "quarter", 0) for i in range(size.architectures)]
    if distill:
        jobs += [Job(i, "quarter_distill", 0) for i in range(size.architectures)]
    return jobs


# ----- evaluation (runs in worker processes) ------------------------------------------------------

_CONTEXT: Any = None


def _init_worker(threads: int, device: str, data: dict[str, Any]) -> None:
    """One data set and FID reference per worker process; threads split the cores between workers."""
    global _CONTEXT
    import torch

    from evaluators.proxy import EvalContext

    torch.set_num_threads(threads)
    _CONTEXT = EvalContext.load(dataset=data["dataset"], image_size=data["image_size"],
                                channels=data["channels"], device=device)


def budget_for(kind: str, proxy_budget: Any, distill: Any = None) -> Any:
    """The budget of a job kind: the proxy, a quarter of it (trained toward the teacher of
    ``distill``, an :class:`evaluators.budget.Distill`, for ``quarter_distill``), or
    ``nas.train``'s 8x reference."""
    from nas.train import TRAIN_MULTIPLIER

    if kind == "proxy":
        return proxy_budget
    if kind == "quarter":
        return proxy_budget.scaled(0.25)
    if kind == "quarter_distill":
        if distill is None:
            raise ValueError("quarter_distill needs a teacher (--distill)")
        return dataclasses.replace(proxy_budget.scaled(0.25), distill=distill)
    return dataclasses.replace(proxy_budget, steps=TRAIN_MULTIPLIER * proxy_budget.steps,
                               time_limit_s=TRAIN_MULTIPLIER * proxy_budget.time_limit_s)


def run_job(job: Job, spec_yaml: str, budget_name: str, distill: Any = None) -> dict[str, Any]:
    """Evaluate one job; returns the metrics kept in ``runs.jsonl``."""
    from evaluators.budget import DEFAULT_BUDGETS
    from evaluators.proxy import evaluate
    from nas.spec import UNetSpec

    spec = UNetSpec.from_yaml(spec_yaml)
    budget = budget_for(job.kind, DEFAULT_BUDGETS[budget_name], distill)
    # A hook that never stops the run, so the proxy records its rung losses (early-stopping signal).
    hook = (lambda _rung, _step, _loss: None) if job.kind == "proxy" else None
    result = evaluate(spec, budget=budget, context=_CONTEXT, seed=job.seed, rung_hook=hook, measure=False)
    return {"key": job.key, "index": job.index, "kind": job.kind, "seed": job.seed, "status": result.status,
            "reason": result.reason, "steps": result.steps, "val_loss": result.val_loss,
            "fid_proxy": result.fid_proxy, "kid_mean": result.kid_mean,
            "rung_val_loss": [r["val_loss"] for r in result.rungs],
            "train_seconds": round(result.train_seconds, 2), "eval_seconds": round(result.eval_seconds, 2),
            **({"teacher_seconds": round(result.teacher_seconds, 2), "distill_loss": result.distill_loss}
               if result.teacher_seconds is not None else {})}


def worker_threads(size: Size) -> int:
    """Torch threads per worker.  Never more threads than cores in all: oversubscribed OpenMP
    threads spin against each other, and slowed a smoke evaluation 8x on this 2-core machine."""
    from evaluators.contention import core_share

    if size.threads:
        return size.threads
    return core_share(size.workers) if size.device == "cpu" else 1


def run_all(jobs: list[Job], specs: list[Any], size: Size, data: dict[str, Any], log: Path,
            distill: Any = None) -> dict[str, dict]:
    """Run the jobs not yet in ``log`` (appending each as it finishes); returns every record."""
    done: dict[str, dict] = {}
    if log.exists():
        for line in log.read_text().splitlines():
            if line.strip():
                record = json.loads(line)
                done[record["key"]] = record
    todo = [j for j in jobs if j.key not in done]
    if not todo:
        return done
    threads = worker_threads(size)
    print(f"{len(todo)} evaluations to run ({len(done)} cached) on {size.workers} worker(s) x {threads} thread(s)",
          flush=True)
    with log.open("a") as sink:
        for n, record in enumerate(_results(todo, specs, size, data, threads, distill), 1):
            done[record["key"]] = record
            sink.write(json.dumps(record) + "\n")
            sink.flush()
            print(f"[{n}/{len(todo)}] {record['key']} {record['status']} val_loss {record['val_loss']} "
                  f"fid {record['fid_proxy']} ({record['eval_seconds']} s)", flush=True)
    return done


def _results(todo: list[Job], specs: list[Any], size: Size, data: dict[str, Any],
             threads: int, distill: Any = None) -> Iterator[dict[str, Any]]:
    """Each job's record as it finishes: in this process for one worker (no start-up of a second
    interpreter), else in a pool of spawned workers."""
    if size.workers == 1:
        _init_worker(threads, size.device, data)
        for job in todo:
            yield run_job(job, specs[job.index].to_yaml(), size.budget, distill)
        return
    import multiprocessing

    with ProcessPoolExecutor(size.workers, mp_context=multiprocessing.get_context("spawn"),
                             initializer=_init_worker, initargs=(threads, size.device, data)) as pool:
        futures = [pool.submit(run_job, j, specs[j.index].to_yaml(), size.budget, distill) for j in todo]
        for future in as_completed(futures):
            yield future.result()


# ----- analysis ---------------------------------------------------------------------------------

def rank_agreement(x: list[float], y: list[float]) -> dict[str, float | int]:
    """Spearman and Kendall correlations (with p-values) of paired values."""
    from scipy.stats import kendalltau, spearmanr

    if len(x) < 3:
        return {"n": len(x), "spearman": math.nan, "spearman_p": math.nan, "kendall": math.nan, "kendall_p": math.nan}
    rho, rho_p = spearmanr(x, y)
    tau, tau_p = kendalltau(x, y)
    return {"n": len(x), "spearman": float(rho), "spearman_p": float(rho_p), "kendall": float(tau),
            "kendall_p": float(tau_p)}


def analyse(records: dict[str, dict], size: Size) -> dict[str, Any]:
    """Correlations of each proxy with the reference, and the seed-noise share."""
    import numpy as np

    def get(index: int, kind: str, seed: int = 0) -> dict | None:
        record = records.get(f"{index}:{kind}:{seed}")
        return record if record and record["status"] == "ok" else None

    arch = [i for i in range(size.architectures)
            if get(i, "reference") and get(i, "proxy") and get(i, "quarter")]
    ref = {m: [get(i, "reference")[m] for i in arch] for m in ("val_loss", "fid_proxy")}
    candidates: dict[str, dict[str, list[float]]] = {
        "proxy": {m: [get(i, "proxy")[m] for i in arch] for m in ("val_loss", "fid_proxy")},
        "quarter": {m: [get(i, "quarter")[m] for i in arch] for m in ("val_loss", "fid_proxy")},
    }
    if arch and all(get(i, "quarter_distill") for i in arch):
        candidates["quarter_distill"] = {m: [get(i, "quarter_distill")[m] for i in arch]
                                         for m in ("val_loss", "fid_proxy")}
    rungs = min((len(get(i, "proxy")["rung_val_loss"]) for i in arch), default=0)
    for r in range(rungs):
        candidates[f"rung{r}"] = {"val_loss": [get(i, "proxy")["rung_val_loss"][r] for i in arch]}
    correlations = {
        name: {m: rank_agreement(values, ref[m]) for m, values in metrics.items()}
        for name, metrics in candidates.items()
    }
    # Does the proxy's loss predict the reference's sample quality?
    correlations["proxy"]["val_loss_vs_reference_fid_proxy"] = rank_agreement(candidates["proxy"]["val_loss"],
                                                                              ref["fid_proxy"])
    noise: dict[str, Any] = {}
    for m in ("val_loss", "fid_proxy"):
        per_arch = []
        for i in range(size.noise_architectures):
            values = [get(i, "proxy", s)[m] for s in range(size.seeds) if get(i, "proxy", s)]
            if len(values) >= 2:
                per_arch.append({"index": i, "values": values, "std": float(np.std(values, ddof=1))})
        within = float(np.sqrt(np.mean([p["std"] ** 2 for p in per_arch]))) if per_arch else math.nan
        across = float(np.std(candidates["proxy"][m], ddof=1)) if len(arch) >= 2 else math.nan
        noise[m] = {"per_architecture": per_arch, "seed_std": within, "architecture_std": across,
                    # the share of the proxy's spread across architectures that seed noise alone explains
                    "noise_share": within ** 2 / across ** 2 if across else math.nan}
    return {"architectures_scored": arch, "correlations": correlations, "seed_noise": noise}


def plot(records: dict[str, dict], analysis: dict[str, Any], size: Size, path: Path) -> None:
    """Proxy against reference for both metrics, seed spread as error bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, axes = plt.subplots(1, 2, figsize=(10, 4.4))
    arch = analysis["architectures_scored"]
    for ax, metric, label in zip(axes, ("val_loss", "fid_proxy"), ("held-out loss", "FID proxy"), strict=True):
        xs = [records[f"{i}:proxy:0"][metric] for i in arch]
        ys = [records[f"{i}:reference:0"][metric] for i in arch]
        spread = {p["index"]: p["values"] for p in analysis["seed_noise"][metric]["per_architecture"]}
        xerr = [[xs[k] - min(spread.get(i, [xs[k]])) for k, i in enumerate(arch)],
                [max(spread.get(i, [xs[k]])) - xs[k] for k, i in enumerate(arch)]]
        ax.errorbar(xs, ys, xerr=np.array(xerr), fmt="o", capsize=3, color="tab:blue",
                    label="seed 0 (bars: range over seeds)")
        for k, i in enumerate(arch):
            ax.annotate(str(i), (xs[k], ys[k]), textcoords="offset points", xytext=(4, 3), fontsize=8)
        c = analysis["correlations"]["proxy"][metric]
        ax.set_title(f"{label}: Spearman {c['spearman']:.2f}, Kendall {c['kendall']:.2f} (n={c['n']})")
        ax.set_xlabel(f"proxy ({size.budget} budget)")
        ax.set_ylabel("reference (8x steps)")
        if metric == "fid_proxy" and xs and min(xs + ys) > 0:
            ax.set_xscale("log")
            ax.set_yscale("log")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=sorted(SIZES), default="cpu")
    parser.add_argument("--space", default="light.yaml")
    parser.add_argument("--seed", type=int, default=0, help="seed of the architecture draw")
    parser.add_argument("--workers", type=int, help="parallel evaluations (default: the size's)")
    parser.add_argument("--out", help=f"output folder (default results/benchmarks/{NAME})")
    parser.add_argument("--distill", metavar="CONFIG",
                        help="also score the quarter budget distilled from a teacher: this exported config, "
                             "trained by nas.train into <out>/teacher (resumed or reused when there)")
    parser.add_argument("--distill-weight", type=float, default=1.0, help="weight of the teacher term (default 1)")
    args = parser.parse_args(argv)
    size = SIZES[args.size]
    if args.workers:
        size = dataclasses.replace(size, workers=args.workers)

    from nas.space import load_space

    out = output_dir(NAME, args.out)
    space = load_space(args.space)
    specs = pick_architectures(args.space, size.architectures, args.seed)
    data = {"dataset": space.data.dataset, "image_size": specs[0].image_size, "channels": specs[0].in_channels}
    distill, teacher = None, None
    if args.distill:
        from evaluators.budget import Distill

        teacher = train_teacher(Path(args.distill), out / "teacher", size)
        distill = Distill(teacher=str((out / "teacher").resolve()), weight=args.distill_weight)
    records = run_all(plan_jobs(size, distill=distill is not None), specs, size, data, out / "runs.jsonl", distill)
    analysis = analyse(records, size)
    plot(records, analysis, size, out / f"{NAME}.png")

    from evaluators.budget import DEFAULT_BUDGETS
    from nas.cost import static_costs

    proxy_budget = DEFAULT_BUDGETS[size.budget]
    architectures = [{"index": i, "digest": s.digest(), **{k: int(v) for k, v in static_costs(s).items()},
                      "runs": {k: records[f"{i}:{k}:0"] for k in KINDS if f"{i}:{k}:0" in records}}
                     for i, s in enumerate(specs)]
    payload = {"size": args.size, "space": args.space, "draw_seed": args.seed, "device": size.device,
               "workers": size.workers, "threads_per_worker": worker_threads(size),
               "budgets": {k: budget_for(k, proxy_budget).to_dict() for k in ("proxy", "quarter", "reference")},
               **analysis, "architectures": architectures,
               **({"distillation": distillation_summary(records, teacher, args, out)} if teacher else {}),
               "compute_seconds": round(sum(r["eval_seconds"] for r in records.values()), 1)}
    write_result(out / f"{NAME}.json", payload)
    print_summary(analysis)
    return 0


def train_teacher(config: Path, run: Path, size: Size) -> dict[str, Any]:
    """The teacher: ``config`` trained by ``nas.train`` (its full recipe at the size's budget) into
    ``run``; a finished run is reused and an interrupted one resumed.  Returns its final.json."""
    from nas.train import TrainRequest, train

    final = run / "final.json"
    if final.is_file():
        return json.loads(final.read_text())
    print(f"training the teacher {config} into {run}", flush=True)
    return train(TrainRequest(config=config, out=run, budget=size.budget, device=size.device,
                              resume=(run / "checkpoint.pt").is_file()), progress=False)


def distillation_summary(records: dict[str, dict], teacher: dict[str, Any], args: argparse.Namespace,
                         out: Path) -> dict[str, Any]:
    """The teacher and what its forward passes cost the distilled quarter runs."""
    from _common import shown_path

    def total(kind: str, key: str) -> float:
        return round(sum(r.get(key) or 0.0 for r in records.values() if r["kind"] == kind), 2)

    return {"teacher_config": shown_path(Path(args.distill)), "teacher_run": shown_path(out / "teacher"),
            "weight": args.distill_weight,
            "teacher": {k: teacher.get(k) for k in ("params", "steps", "val_loss", "fid_proxy", "train_seconds")},
            "teacher_seconds": total("quarter_distill", "teacher_seconds"),
            "train_seconds": {"quarter": total("quarter", "train_seconds"),
                              "quarter_distill": total("quarter_distill", "train_seconds")},
            "eval_seconds": {"quarter": total("quarter", "eval_seconds"),
                             "quarter_distill": total("quarter_distill", "eval_seconds")}}


def print_summary(analysis: dict[str, Any]) -> None:
    """The README's table, printed."""
    print("| proxy | metric | Spearman | Kendall | n |\n|---|---|---|---|---|")
    for name, metrics in analysis["correlations"].items():
        for metric, c in metrics.items():
            print(f"| {name} | {metric} | {c['spearman']:.3f} | {c['kendall']:.3f} | {c['n']} |")
    for metric, n in analysis["seed_noise"].items():
        print(f"seed noise {metric}: seed std {n['seed_std']:.4g}, architecture std {n['architecture_std']:.4g}, "
              f"noise share {n['noise_share']:.3f}")


if __name__ == "__main__":
    raise SystemExit(main())
