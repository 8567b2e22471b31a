"""Temporal score sanity check: does ``fvd_proxy`` tell real clips from broken ones?

    python benchmarks/temporal_score.py --size cpu     # the committed figures (about 2 minutes on 2 cores)
    python benchmarks/temporal_score.py --size quick   # structure check (tiny clips), seconds once cached

Sets of N clips are scored against the held-out clips of the video search's data (Moving MNIST,
8 frames of 32x32 at ``cpu``), with both video scores: ``fvd_proxy`` (clip features,
:func:`evaluators.video_fid.temporal_scores`) and the per-frame ``fid_proxy``
(:func:`evaluators.fid.score_samples` with :func:`evaluators.video_fid.frame_reference`):

* ``real``: N train clips (a seeded draw): the floor, what a perfect generator scores;
* ``reversed``: the same clips played backwards: bouncing digits are time-symmetric, so a
  sound temporal score keeps this near the floor;
* ``shuffled``: the same clips with each clip's frames in a random order (every frame real);
* ``static``: each clip's first frame held for the whole clip (every frame real, no motion).

A temporal score must put ``shuffled`` and ``static`` clearly above ``real``; the per-frame FID
proxy, which sees frames one at a time, cannot (it scores ``shuffled`` exactly as ``real``).
Each condition is repeated over several draws (``draws``), at the search budgets' sample counts
(N = 32 clips at ``cpu``, as ``video.yaml``'s ``fid_samples``, and the 200 of the held-out split).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import output_dir, write_result

NAME = "temporal_score"
CONDITIONS = ("real", "reversed", "shuffled", "static")


@dataclass(frozen=True)
class Size:
    """How big a run is: the clips (as in a space's ``data``) and the sample counts scored."""

    frames: int
    image_size: int
    clips: int | None  # clips generated in all (None: the video search's default)
    counts: tuple[int, ...]
    draws: int


SIZES = {
    "quick": Size(frames=4, image_size=28, clips=200, counts=(16,), draws=2),
    "cpu": Size(frames=8, image_size=32, clips=None, counts=(32, 200), draws=5),
}


def broken(clips: Any, condition: str, rng: np.random.Generator) -> Any:
    """``clips`` (N, C, F, H, W) as ``condition`` makes them (module docstring)."""
    if condition == "real":
        return clips
    if condition == "reversed":
        return clips.flip(2)
    if condition == "static":
        return clips[:, :, :1].expand_as(clips).contiguous()
    if condition == "shuffled":
        import torch

        # A random order per clip; one equal to the original is redrawn, so every shuffled clip
        # really is out of order.
        frames = clips.shape[2]
        orders = []
        for _ in range(len(clips)):
            order = rng.permutation(frames)
            while frames > 1 and (order == np.arange(frames)).all():
                order = rng.permutation(frames)
            orders.append(order)
        index = torch.from_numpy(np.stack(orders))  # (N, F)
        return torch.stack([clip[:, idx] for clip, idx in zip(clips, index, strict=True)])
    raise ValueError(f"unknown condition {condition!r}; valid: {', '.join(CONDITIONS)}")


def run(size: Size) -> dict[str, Any]:
    """Score every condition at every count over ``size.draws`` draws; the figures as a dict."""
    import torch

    from evaluators.contention import REFERENCE_THREADS, cpu_threads
    from evaluators.fid import score_samples
    from evaluators.video_data import load_video_dataset
    from evaluators.video_fid import clip_reference, frame_reference, temporal_scores

    data = load_video_dataset("moving_mnist", frames=size.frames, image_size=size.image_size, clips=size.clips)
    clip_ref = clip_reference(data)
    frame_ref = frame_reference(data)
    rows: list[dict[str, Any]] = []
    with cpu_threads(REFERENCE_THREADS):
        for n in size.counts:
            for draw in range(size.draws):
                rng = np.random.default_rng([draw, n])
                pick = torch.from_numpy(np.sort(rng.choice(len(data.train), n, replace=False)))
                real = data.train[pick]
                for condition in CONDITIONS:
                    clips = broken(real, condition, rng)
                    fvd = temporal_scores(clips, clip_ref)
                    fid = score_samples(clips, frame_ref, seed=0, kid_subsets=2, kid_subset_size=64)
                    rows.append({"n": n, "draw": draw, "condition": condition, "fvd_proxy": fvd["fvd_proxy"],
                                 "fid_proxy": fid["fid_proxy"]})
    summary = []
    for n in size.counts:
        for condition in CONDITIONS:
            picked = [r for r in rows if r["n"] == n and r["condition"] == condition]
            fvd = np.array([r["fvd_proxy"] for r in picked])
            fid = np.array([r["fid_proxy"] for r in picked])
            summary.append({"n": n, "condition": condition, "fvd_mean": float(fvd.mean()),
                            "fvd_std": float(fvd.std(ddof=1)) if len(fvd) > 1 else 0.0,
                            "fid_mean": float(fid.mean()),
                            "fid_std": float(fid.std(ddof=1)) if len(fid) > 1 else 0.0})
    return {"data": data.key, "clip_feature_kind": clip_ref.feature_kind,
            "clip_motion_accuracy": clip_ref.accuracy, "clip_train_seconds": clip_ref.train_seconds,
            "clip_reference_from_cache": clip_ref.from_cache, "held_out_clips": len(data.held_out),
            "draws": size.draws, "rows": rows, "summary": summary}


def table(summary: list[dict[str, Any]]) -> str:
    """The summary as a markdown table: per N and condition, both scores and their ratio to real."""
    real = {s["n"]: s for s in summary if s["condition"] == "real"}
    lines = ["| N clips | clips | fvd_proxy | x real | per-frame fid_proxy | x real |",
             "|---:|---|---:|---:|---:|---:|"]
    for s in summary:
        base = real[s["n"]]
        lines.append(f"| {s['n']} | {s['condition']} | {s['fvd_mean']:.2f} ± {s['fvd_std']:.2f} | "
                     f"{s['fvd_mean'] / base['fvd_mean']:.2f} | {s['fid_mean']:.2f} ± {s['fid_std']:.2f} | "
                     f"{s['fid_mean'] / base['fid_mean']:.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="cpu")
    parser.add_argument("--out", help=f"output folder (default results/benchmarks/{NAME})")
    args = parser.parse_args(argv)
    out = output_dir(NAME, args.out)
    figures = run(SIZES[args.size])
    write_result(out / f"{NAME}.json", {"size": args.size, **figures})
    text = table(figures["summary"])
    from nas.io import atomic_write

    atomic_write(out / "table.md", text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
