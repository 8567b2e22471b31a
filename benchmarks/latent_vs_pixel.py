"""Latent against pixel U-Nets: speed at similar FID proxy, from a latent and a pixel search.

Reads two finished searches at the same budget on the same data (by default the
``latent.yaml`` search committed in ``results/benchmarks/latent_search/`` and the 32-trial
``light.yaml`` search of ``results/benchmarks/searched_vs_hand/``), then:

1. takes each latent trial on the latent search's front of FID proxy against throughput with
   one decode, and pairs it with the fastest pixel trial whose FID proxy is at most 10% above
   its own (none: the pixel search's best FID proxy, said so);
2. times every paired network again with the gate's own timing in ``--rounds`` interleaved
   rounds in this one process (median; a latent network also with one decode per image, the
   decoder timed under the same policy), so both sides see the same machine state;
3. derives the cost of one full sample per image (``sample_steps`` denoiser evaluations, plus one
   decode for a latent network) and the ratio pixel / latent.

Writes ``OUT/latent_vs_pixel.json`` and ``OUT/latent_vs_pixel.png`` (FID proxy against
throughput, pixel trials and latent trials with one decode, the pairs joined) and prints the
README rows.  Both searches' FID proxies are scored against the same held-out pixel images with
the same classifier, at the same sample count.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, output_dir, write_result

from nas.cli import positive_int

NAME = "latent_vs_pixel"
FID_WITHIN = 0.10  # a pixel network "at similar FID proxy": at most 10% above the latent one's


def ok_trials(storage: str, study_name: str) -> tuple[Any, list[Any]]:
    """A finished study and its trials that trained and were scored."""
    from nas.study import load_existing_study

    study = load_existing_study(study_name, storage)
    trials = [t for t in study.get_trials(deepcopy=False) if t.user_attrs.get("status") == "ok"
              and t.user_attrs.get("duplicate_of") is None and t.user_attrs.get("fid_proxy") is not None]
    return study, trials


def speed_front(trials: list[Any], speed: str) -> list[Any]:
    """Trials no other trial beats on both FID proxy (lower) and ``speed`` (higher)."""
    from nas.front import pareto_mask

    points = np.array([[t.user_attrs["fid_proxy"], -t.user_attrs[speed]] for t in trials])
    return [t for t, keep in zip(trials, pareto_mask(points), strict=True) if keep]


def pair(latent: Any, pixel: list[Any]) -> tuple[Any, bool]:
    """The fastest pixel trial within :data:`FID_WITHIN` of ``latent``'s FID proxy (True), else
    the pixel search's best FID proxy (False)."""
    limit = latent.user_attrs["fid_proxy"] * (1 + FID_WITHIN)
    close = [t for t in pixel if t.user_attrs["fid_proxy"] <= limit]
    if close:
        return max(close, key=lambda t: t.user_attrs["throughput"]), True
    return min(pixel, key=lambda t: t.user_attrs["fid_proxy"]), False


def timed(specs: dict[str, tuple[Any, Any]], budget: Any, rounds: int) -> dict[str, dict[str, float]]:
    """Median ``throughput`` (and ``throughput_with_decode`` for a latent spec) of each named
    ``(spec, latent config or None)``, every one once per round in a fresh order."""
    import torch

    from evaluators.device import Precision
    from nas.gate import ThroughputTiming

    device = torch.device("cpu")
    precision = Precision.for_device(device)
    samples: dict[str, list[dict[str, float]]] = {name: [] for name in specs}
    rng = np.random.default_rng(0)
    names = list(specs)
    for _ in range(rounds):
        for index in rng.permutation(len(names)):
            spec, latent = specs[names[index]]
            torch.manual_seed(0)
            figures = ThroughputTiming(budget=budget, device=device, precision=precision, latent=latent)(spec)
            samples[names[index]].append({k: figures[k] for k in ("throughput", "throughput_with_decode")
                                          if k in figures})
    return {name: {k: statistics.median(r[k] for r in runs) for k in runs[0]} for name, runs in samples.items()}


def compare(latent_study: Any, latent_trials: list[Any], pixel_trials: list[Any], *, rounds: int,
            budget: Any) -> dict[str, Any]:
    """The pairs, timed again side by side (see the module docstring)."""
    from nas.space import load_space
    from nas.spec import UNetSpec
    from nas.study import trial_spec

    latent_config = load_space(latent_study.user_attrs["space_source"], check_constraints=False).data.latent
    front = sorted(speed_front(latent_trials, "throughput_with_decode"), key=lambda t: t.user_attrs["fid_proxy"])
    pairs = [(lt, *pair(lt, pixel_trials)) for lt in front]
    specs: dict[str, tuple[Any, Any]] = {}
    for lt, pt, _close in pairs:
        specs[f"latent:{lt.number}"] = (UNetSpec.from_dict(trial_spec(lt)), latent_config)
        specs[f"pixel:{pt.number}"] = (UNetSpec.from_dict(trial_spec(pt)), None)
    speeds = timed(specs, budget, rounds)
    steps = budget.sample_steps
    rows = []
    for lt, pt, close in pairs:
        lat, pix = speeds[f"latent:{lt.number}"], speeds[f"pixel:{pt.number}"]
        decode_s = 1 / lat["throughput_with_decode"] - 1 / lat["throughput"]  # one decode per image
        latent_sample = steps / lat["throughput"] + decode_s
        pixel_sample = steps / pix["throughput"]
        rows.append({
            "latent_trial": lt.number, "pixel_trial": pt.number, "pixel_within_10pct": close,
            "latent_fid_proxy": lt.user_attrs["fid_proxy"], "pixel_fid_proxy": pt.user_attrs["fid_proxy"],
            "reconstruction_fid": lt.user_attrs.get("reconstruction_fid"), "fid_floor": lt.user_attrs.get("fid_floor"),
            "latent_throughput": lat["throughput"], "latent_throughput_with_decode": lat["throughput_with_decode"],
            "pixel_throughput": pix["throughput"],
            "latent_macs": lt.user_attrs.get("macs"), "latent_macs_with_decode": lt.user_attrs.get("macs_with_decode"),
            "pixel_macs": pt.user_attrs.get("macs"),
            "latent_sample_ms": 1000 * latent_sample, "pixel_sample_ms": 1000 * pixel_sample,
            "sample_speedup": pixel_sample / latent_sample,
        })
    return {"sample_steps": steps, "rounds": rounds, "latent": latent_config.to_dict(), "pairs": rows}


def markdown(result: dict[str, Any]) -> str:
    """The README table."""
    lines = ["| latent trial | FID proxy (floor, reconstruction) | U-Net / + decode (images/s) | MACs / + decode "
             "| pixel trial | FID proxy | images/s | MACs | sample (ms/image) latent vs pixel | speed-up |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in result["pairs"]:
        note = "" if r["pixel_within_10pct"] else " (best pixel FID)"
        floors = f"{r['fid_floor']:.1f}, {r['reconstruction_fid']:.1f}"
        lines.append(
            f"| {r['latent_trial']} | {r['latent_fid_proxy']:.1f} ({floors}) "
            f"| {r['latent_throughput']:,.0f} / {r['latent_throughput_with_decode']:,.0f} "
            f"| {r['latent_macs'] / 1e6:.1f} M / {r['latent_macs_with_decode'] / 1e6:.1f} M "
            f"| {r['pixel_trial']}{note} | {r['pixel_fid_proxy']:.1f} | {r['pixel_throughput']:,.0f} "
            f"| {r['pixel_macs'] / 1e6:.1f} M | {r['latent_sample_ms']:.2f} vs {r['pixel_sample_ms']:.2f} "
            f"| {r['sample_speedup']:.2f}x |")
    return "\n".join(lines)


def plot(latent_trials: list[Any], pixel_trials: list[Any], result: dict[str, Any], path: Path, *,
         names: tuple[str, str] = ("latent", "pixel")) -> None:
    """FID proxy against throughput (a latent trial's with one decode) as each search timed it,
    and the pairs as re-timed side by side, joined."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.scatter([t.user_attrs["throughput"] for t in pixel_trials], [t.user_attrs["fid_proxy"] for t in pixel_trials],
               marker="o", alpha=0.4, label=f"{names[1]} trials (the search's timing)")
    ax.scatter([t.user_attrs["throughput_with_decode"] for t in latent_trials],
               [t.user_attrs["fid_proxy"] for t in latent_trials], marker="^", alpha=0.4,
               label=f"{names[0]} trials, U-Net + one decode (the search's timing)")
    for i, r in enumerate(result["pairs"]):
        ax.plot([r["latent_throughput_with_decode"], r["pixel_throughput"]],
                [r["latent_fid_proxy"], r["pixel_fid_proxy"]], color="black", linewidth=0.8, marker="x",
                label="pairs, re-timed side by side" if i == 0 else None)
    floor = result["pairs"][0]["reconstruction_fid"] if result["pairs"] else None
    if floor is not None:
        ax.axhline(floor, linestyle="--", color="grey", linewidth=0.8, label="autoencoder reconstruction FID")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("throughput (images/s)")
    ax.set_ylabel("FID proxy (lower is better)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--latent-storage", default=f"sqlite:///{RESULTS / 'latent_search' / 'latent.db'}")
    parser.add_argument("--latent-study", default="latent")
    parser.add_argument("--pixel-storage", default=f"sqlite:///{RESULTS / 'searched_vs_hand' / 'search' / 'light.db'}")
    parser.add_argument("--pixel-study", default="light")
    parser.add_argument("--budget", default="cpu", help="the budget both searches ran at (its timing batch)")
    parser.add_argument("--rounds", type=positive_int, default=5, help="interleaved timing rounds")
    parser.add_argument("--out", default=None, help="output folder (default results/benchmarks/latent_search)")
    args = parser.parse_args(argv)

    from nas.space import load_space

    latent_study, latent_trials = ok_trials(args.latent_storage, args.latent_study)
    _pixel_study, pixel_trials = ok_trials(args.pixel_storage, args.pixel_study)
    if not latent_trials or not pixel_trials:
        print("error: both searches need trials that trained and were scored", file=sys.stderr)
        return 2
    budget = load_space(latent_study.user_attrs["space_source"], check_constraints=False).budgets[args.budget]
    out = output_dir("latent_search", args.out)
    result = compare(latent_study, latent_trials, pixel_trials, rounds=args.rounds, budget=budget)
    write_result(out / f"{NAME}.json", {"latent_study": args.latent_study, "pixel_study": args.pixel_study,
                                        "budget": args.budget, **result})
    plot(latent_trials, pixel_trials, result, out / f"{NAME}.png", names=(args.latent_study, args.pixel_study))
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
