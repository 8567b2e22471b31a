"""Searched against hand-designed: does a light.yaml search find a better U-Net than the classics?

    python benchmarks/searched_vs_hand.py --size cpu      # about an hour on 2 CPU cores; resumable
    python benchmarks/searched_vs_hand.py --size quick    # the test: structure only, a minute

1. A search of ``search_spaces/light.yaml`` (``nas.search``'s own :func:`nas.search.run_search`,
   the default sampler and stopping rule, seed 0) for ``--trials`` finished trials at the
   size's budget, into ``OUT/search``.  A rerun continues the same study.
2. Three architectures of its front: the knee (``nas.export --pick knee``), the best FID proxy,
   and the fastest whose FID proxy is within 10% of the best (one design may fill several roles).
3. The hand designs light.yaml can express, at the width its MAC limit allows (base 8 channels:
   at 16, two blocks per level with standard convolutions cost 81-89 M MACs against the 40 M
   limit): ``ddpm`` (standard residual blocks, two per level, attention at 14x14 and in the
   bottleneck, additive time embedding, convolution resampling, concatenated skips), ``adm``
   (the same with scale-shift time conditioning, residual-block resampling and attention at
   14x14, 7x7 and in the bottleneck), ``lightweight`` (the seed chapter's design: ``ddpm``'s
   layout with depthwise-separable blocks and squeeze-excitation everywhere, a third of the
   parameters).
4. Every design trained with ``nas.train``'s full recipe (8x the budget's steps, held-out loss,
   FID proxy with its real-vs-real floor, KID) for ``--seeds`` seeds, each run in
   ``OUT/runs/<design>-seed<N>`` (a finished run is kept, an interrupted one resumed).
5. Throughput of every design timed by the gate's own timing in ``--rounds`` interleaved rounds
   in this one process (median), parameters and MACs counted.

Writes ``OUT/searched_vs_hand.json`` (every figure, the comparisons) and
``OUT/searched_vs_hand.png`` (FID proxy against throughput: the search's front at the proxy
budget, every design after full training, seed spread as error bars) and prints the README
rows.  A searched design beats a hand design when its FID proxy is lower at equal or higher
throughput; the margin is reported against the seed noise (the two designs' seed standard
deviations combined).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import output_dir, write_result
from _tabular import interleaved_throughput

from nas.cli import positive_int

NAME = "searched_vs_hand"
SPACE = "light.yaml"
FID_WITHIN = 0.10  # "the fastest within 10% of the best FID proxy"


@dataclass(frozen=True)
class Size:
    """What one ``--size`` runs."""

    budget: str  # a budget of light.yaml
    trials: int
    seeds: int
    rounds: int  # interleaved throughput rounds
    # Steps between held-out losses and checkpoints in the full training (None: nas.train's
    # default, a tenth of the run); the quick size checks structure and evaluates once.
    eval_every: int | None = None
    # Steps of the full training (None: nas.train's default, 8x the budget's); the quick size's
    # structure check trains 8.
    train_steps: int | None = None


SIZES = {"quick": Size(budget="smoke", trials=3, seeds=2, rounds=2, eval_every=10**6, train_steps=8),
         "cpu": Size(budget="cpu", trials=32, seeds=2, rounds=5)}

_LEVELS = range(3)
_DDPM = {"levels": 3, "base_channels": 8, "level1.channel_mult": 2, "level2.channel_mult": 2,
         **{f"level{i}.blocks": 2 for i in _LEVELS}, **{f"level{i}.conv": "standard" for i in _LEVELS},
         **{f"level{i}.se": False for i in _LEVELS}, "level1.attention": "full", "level2.attention": "none",
         "mid_attention": "full", "head_channels": 16, "skip_fusion": "concat", "time_conditioning": "additive",
         "resample": "conv"}
HAND_DESIGNS: dict[str, dict[str, Any]] = {
    "ddpm": _DDPM,
    "adm": {**_DDPM, "time_conditioning": "scale_shift", "resample": "resblock", "level2.attention": "full"},
    "lightweight": {**_DDPM, **{f"level{i}.conv": "depthwise_separable" for i in _LEVELS},
                    **{f"level{i}.se": True for i in _LEVELS}},
}


def hand_spec(space: Any, decisions: dict[str, Any]) -> Any:
    """The spec ``decisions`` pick in ``space`` (every searched decision named), checked against
    the space's constraints."""
    from nas.cost import static_costs
    from nas.errors import ConfigError

    spec = space.resolve(lambda name, _decision: decisions[name])
    over = {k: v for k, v in space.constraint_values(static_costs(spec)).items() if v > 0}
    if over:
        raise ConfigError(f"hand design breaks the space's limits by {over}", source=SPACE)
    return spec


def search(out: Path, size: Size, trials: int) -> Any:
    """Run (or continue) the search; return its study."""
    from nas.search import SearchSettings, run_search
    from nas.study import find_storage_url, load_existing_study

    settings = SearchSettings(space=SPACE, trials=trials, budget=size.budget, seed=0, device="cpu",
                              out=str(out / "search"))
    outcome = run_search(settings, progress=False)
    if outcome.exit_code != 0:
        raise SystemExit(f"error: the search ended with exit code {outcome.exit_code}")
    name = outcome.context.study_name
    return load_existing_study(name, find_storage_url(name, out / "search"))


def front_picks(study: Any) -> dict[str, int]:
    """Trial numbers of the knee, the best FID proxy and the fastest within 10% of it."""
    from optuna.trial import TrialState

    from nas.front import is_feasible
    from nas.pareto import knee_trial

    names = study.metric_names
    feasible = [t for t in study.trials if t.state == TrialState.COMPLETE and is_feasible(t)]
    if not feasible:
        raise SystemExit("error: the search found no feasible completed trial")
    value = lambda t, m: t.values[names.index(m)]  # noqa: E731
    best_fid = min(feasible, key=lambda t: value(t, "fid_proxy"))
    near = [t for t in feasible if value(t, "fid_proxy") <= (1 + FID_WITHIN) * value(best_fid, "fid_proxy")]
    fastest = max(near, key=lambda t: value(t, "throughput"))
    return {"knee": knee_trial(study).number, "best_fid_proxy": best_fid.number,
            "fastest_within_10pct_fid": fastest.number}


def write_configs(out: Path, study: Any, picks: dict[str, int], space: Any) -> dict[str, dict[str, Any]]:
    """A model YAML per design (searched ones exported from the study); name -> {path, roles, spec}."""
    from nas.export import export_from_study
    from nas.model_io import read_model_yaml, write_model_yaml

    configs = out / "configs"
    configs.mkdir(parents=True, exist_ok=True)
    designs: dict[str, dict[str, Any]] = {}
    for role, number in picks.items():
        name = f"searched-trial{number}"
        if name not in designs:
            path = configs / f"{name}.yaml"
            export_from_study(study.study_name, pick=f"trial:{number}", out=path, results=out / "search")
            designs[name] = {"path": path, "roles": [], "spec": read_model_yaml(path)[0], "trial": number}
        designs[name]["roles"].append(role)
    # The hand designs get the searched exports' data and budgets, so nas.train treats them alike.
    _, exported = read_model_yaml(next(iter(designs.values()))["path"])
    sections = {"data": exported.get("data"), "budgets": exported.get("budgets")}
    for name, decisions in HAND_DESIGNS.items():
        spec = hand_spec(space, decisions)
        path = write_model_yaml(configs / f"{name}.yaml", spec, header=f"hand design '{name}' ({NAME}.py)",
                                sections={**sections, "provenance": {"design": name}})
        designs[name] = {"path": path, "roles": ["hand"], "spec": spec}
    return designs


def train_all(out: Path, designs: dict[str, dict[str, Any]], size: Size, seeds: int) -> None:
    """Train every design for every seed (finished runs kept, interrupted ones resumed)."""
    from nas.readers import read_json
    from nas.train import TrainRequest, train

    for name, design in designs.items():
        design["runs"] = []
        for seed in range(seeds):
            run = out / "runs" / f"{name}-seed{seed}"
            if not (run / "final.json").is_file():
                print(f"training {name} seed {seed}", flush=True)
                train(TrainRequest(config=design["path"], out=run, budget=size.budget, seed=seed, device="cpu",
                                   steps=size.train_steps, eval_every=size.eval_every,
                                   checkpoint_every=size.eval_every,
                                   resume=run.is_dir()), progress=False)
            design["runs"].append(read_json(run / "final.json"))


def _spread(values: list[float]) -> dict[str, float]:
    return {"mean": float(np.mean(values)), "std": float(np.std(values)), "values": values}


def summarise(designs: dict[str, dict[str, Any]], throughput: dict[str, list[float]]) -> dict[str, Any]:
    """Per design: roles, figures over seeds, throughput median, params and MACs."""
    from nas.cost import static_costs

    out: dict[str, Any] = {}
    for name, d in designs.items():
        ok = [r for r in d["runs"] if r.get("status") == "ok"]
        costs = static_costs(d["spec"])
        out[name] = {
            "roles": d["roles"], "trial": d.get("trial"), "spec_digest": d["spec"].digest(),
            "statuses": [r.get("status") for r in d["runs"]],
            "val_loss": _spread([r["val_loss"] for r in ok]) if ok else None,
            "fid_proxy": _spread([r["fid_proxy"] for r in ok]) if ok else None,
            "fid_floor": ok[0].get("fid_floor") if ok else None,
            "kid_mean": _spread([r["kid_mean"] for r in ok]) if ok else None,
            "throughput": statistics.median(throughput[d["spec"].digest()]),
            "throughput_rounds": throughput[d["spec"].digest()],
            "params": int(costs["params"]), "macs": int(costs["macs"]), "steps": ok[0]["steps"] if ok else None,
            "train_seconds": _spread([r["train_seconds"] for r in ok]) if ok else None,
        }
    return out


def compare(summary: dict[str, Any]) -> dict[str, Any]:
    """Per hand design: the searched designs at equal or higher throughput, their FID proxy margin
    (hand minus searched: positive is better) and that margin over the combined seed noise."""
    out: dict[str, Any] = {}
    searched = {n: s for n, s in summary.items() if "hand" not in s["roles"] and s["fid_proxy"]}
    for name, hand in summary.items():
        if "hand" not in hand["roles"] or not hand["fid_proxy"]:
            continue
        rivals = []
        for other, s in searched.items():
            if s["throughput"] < hand["throughput"]:
                continue
            margin = hand["fid_proxy"]["mean"] - s["fid_proxy"]["mean"]
            noise = float(np.hypot(hand["fid_proxy"]["std"], s["fid_proxy"]["std"]))
            rivals.append({"design": other, "fid_margin": margin, "seed_noise": noise,
                           "margin_over_noise": margin / noise if noise > 0 else None,
                           "throughput_ratio": s["throughput"] / hand["throughput"]})
        better = [r for r in rivals if r["fid_margin"] > 0]
        out[name] = {"rivals_at_equal_or_higher_throughput": rivals,
                     "searched_better": bool(better),
                     "best": max(better, key=lambda r: r["fid_margin"]) if better else None}
    return out


def markdown(summary: dict[str, Any], comparison: dict[str, Any]) -> str:
    """The README rows: one per design, then one per hand design's comparison."""
    def cell(x: dict[str, float] | None, fmt: str) -> str:
        return "failed" if x is None else f"{x['mean']:{fmt}} ± {x['std']:{fmt}}"

    lines = ["| design | roles | FID proxy (floor) | held-out loss | KID | throughput img/s | params | MACs |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for name, s in summary.items():
        floor = f" ({s['fid_floor']:.1f})" if s["fid_floor"] is not None else ""
        lines.append(f"| `{name}` | {', '.join(s['roles'])} | {cell(s['fid_proxy'], '.1f')}{floor} | "
                     f"{cell(s['val_loss'], '.4f')} | {cell(s['kid_mean'], '.1f')} | {s['throughput']:.0f} | "
                     f"{s['params']:,} | {s['macs'] / 1e6:.1f} M |")
    lines += ["", "| hand design | searched better at equal or higher throughput? | FID margin (seed noise) |",
              "|---|---|---|"]
    for name, c in comparison.items():
        best = c["best"]
        lines.append(f"| `{name}` | {'yes: ' + best['design'] if best else 'no'} | "
                     + (f"{best['fid_margin']:.1f} ({best['seed_noise']:.1f})" if best else "-") + " |")
    return "\n".join(lines)


def plot(study: Any, summary: dict[str, Any], path: Path) -> None:
    """FID proxy against throughput: the search's feasible front (proxy budget) and every design
    after full training (mean over seeds, seed spread as error bars)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from nas.front import is_feasible

    names = study.metric_names
    front = [t for t in study.best_trials if is_feasible(t)]
    fig, ax = plt.subplots(figsize=(7, 4.8), dpi=110)
    speed, fid = names.index("throughput"), names.index("fid_proxy")
    ax.scatter([t.values[speed] for t in front], [t.values[fid] for t in front], color="0.6", marker="o",
               label="search front (proxy budget)")
    for name, s in summary.items():
        if s["fid_proxy"] is None:
            continue
        hand = "hand" in s["roles"]
        ax.errorbar(s["throughput"], s["fid_proxy"]["mean"], yerr=s["fid_proxy"]["std"], fmt="s" if hand else "*",
                    markersize=8 if hand else 11, capsize=3, label=f"{name} (full training)")
    ax.set_xlabel("throughput (images/s, interleaved median)")
    ax.set_ylabel("FID proxy (lower is better)")
    ax.set_yscale("log")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=list(SIZES), default="cpu")
    parser.add_argument("--trials", type=positive_int, default=None, help="search trials (default by size)")
    parser.add_argument("--seeds", type=positive_int, default=None, help="training seeds per design")
    parser.add_argument("--out", default=None, help=f"output folder (default results/benchmarks/{NAME})")
    args = parser.parse_args(argv)

    import torch

    from nas.space import load_space

    size = SIZES[args.size]
    out = output_dir(NAME, args.out)
    space = load_space(SPACE)
    study = search(out, size, args.trials or size.trials)
    picks = front_picks(study)
    designs = write_configs(out, study, picks, space)
    train_all(out, designs, size, args.seeds or size.seeds)
    budget = space.budgets[size.budget]
    throughput = interleaved_throughput([d["spec"] for d in designs.values()], budget, torch.device("cpu"),
                                        size.rounds)
    summary = summarise(designs, throughput)
    comparison = compare(summary)
    write_result(out / f"{NAME}.json", {"size": args.size, "space": SPACE, "budget": size.budget,
                                        "search_trials": len(study.trials), "picks": picks,
                                        "hand_designs": HAND_DESIGNS, "designs": summary,
                                        "comparison": comparison})
    plot(study, summary, out / f"{NAME}.png")
    print(markdown(summary, comparison))
    return 0


if __name__ == "__main__":
    sys.exit(main())
