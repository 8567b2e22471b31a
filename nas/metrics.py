"""The metric registry: every figure a candidate is measured by, with its direction, unit and meaning.

One list, read by everything that names a metric: the evaluator's result, the trial runner (which
figures become a trial's user attributes, and which the cheap gate measures), the space loader
(which metrics may be objectives or constraints), the CSV reports and the dashboard note, and
``nas.export`` (which metrics ``best:<metric>`` may pick and in which direction).  The
definitions follow DESIGN.md, "Metric definitions".

``direction`` is the natural direction for a figure of merit (``minimize`` or ``maximize``);
bookkeeping numbers such as ``steps`` have none.  ``source`` says who measures it: the cheap gate
(before any training) or the proxy evaluator.  ``kind`` is ``number`` or ``label`` (a string
that qualifies the numbers, such as the device).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "GATE_METRICS",
    "METRICS",
    "REPORT_METRICS",
    "TRIAL_METRICS",
    "Metric",
    "describe",
    "direction_of",
    "objective_metrics",
]


@dataclass(frozen=True)
class Metric:
    """One recorded figure of a candidate (see the module docstring)."""

    name: str
    unit: str
    meaning: str
    direction: str | None = None
    objective: bool = False  # may be a search objective (and a constraint's metric)
    source: str = "evaluator"  # "gate", "evaluator", or "search" (set by the backend)
    kind: str = "number"  # "number" or "label"
    per_trial: bool = True  # copied into every trial's user attributes
    in_report: bool = False  # a column of trials.csv / pareto.csv
    video_only: bool = False  # measured for clips only (data.frames > 1); an image report leaves it out
    latent_only: bool = False  # measured in latent spaces only (a space's latent:); other reports leave it out


_ALL = (
    Metric("val_loss", "MSE", "held-out denoising loss of the target (eps by default), EMA weights, fixed timestep "
           "grid and noise", "minimize", objective=True, in_report=True),
    Metric("fid_proxy", "FD", "Frechet distance of DDIM samples to held-out images in the dataset classifier's "
           "feature space", "minimize", objective=True, in_report=True),
    Metric("fid_floor", "FD", "the same distance for real training images at the same sample count (the best "
           "reachable fid_proxy)", in_report=True),
    Metric("kid_mean", "KID", "unbiased kernel distance of the samples, mean over subsets", "minimize", objective=True,
           in_report=True),
    Metric("kid_std", "KID", "standard deviation of the kernel distance over subsets", in_report=True),
    Metric("fvd_proxy", "FD", "temporal score of a video search: Frechet distance of sampled clips to held-out "
           "clips in a spatio-temporal classifier's feature space (a shuffled or frozen clip scores badly)",
           "minimize", objective=True, in_report=True, video_only=True),
    Metric("fvd_floor", "FD", "the same distance for real training clips at the same count", in_report=True,
           video_only=True),
    Metric("reconstruction_fid", "FD", "a latent search's floor: the fid_proxy of real training images after the "
           "autoencoder's encode-decode round trip, at the same sample count", in_report=True, latent_only=True),
    Metric("throughput", "images/s", "images (for a video space: clips) per second of one denoiser evaluation at "
           "the budget's timing batch",
           "maximize", objective=True, source="gate", in_report=True),
    Metric("throughput_with_decode", "images/s", "a latent search's throughput of one denoiser evaluation plus one "
           "decode of its latent per image (the decoder timed once, as the candidates are)", "maximize",
           objective=True, source="gate", in_report=True, latent_only=True),
    Metric("latency_ms", "ms", "one denoiser evaluation at batch 1", "minimize", objective=True, source="gate",
           in_report=True),
    Metric("sample_seconds", "s/image", "a full N-step sample per image (N denoiser evaluations)", "minimize",
           objective=True, source="gate"),
    Metric("params", "parameters", "trainable parameters", "minimize", objective=True, source="gate", in_report=True),
    Metric("macs", "MACs/image", "multiply-accumulates of one denoiser evaluation of an image (a clip, for a video "
           "space; torch.utils.flop_counter)",
           "minimize", objective=True, source="gate", in_report=True),
    Metric("macs_with_decode", "MACs/image", "a latent search's macs plus one decode of the latent to pixels",
           "minimize", objective=True, source="gate", in_report=True, latent_only=True),
    Metric("peak_mem_mb", "MiB", "peak CUDA memory of the timing runs (none on the CPU)", "minimize", objective=True,
           source="gate"),
    Metric("steps", "steps", "optimiser steps trained", in_report=True),
    Metric("distill_loss", "MSE", "a distilled candidate's MSE toward the teacher's prediction at its last training "
           "step (budget distill)"),
    Metric("teacher_seconds", "s", "time in the teacher's forward passes (budget distill)"),
    Metric("batch_size", "images", "training batch (half the budget's after an out-of-memory retry)"),
    Metric("train_seconds", "s", "time inside optimiser steps"),
    Metric("sampling_seconds", "s", "time generating the FID proxy's samples"),
    Metric("scoring_seconds", "s", "time scoring: the held-out losses at the rungs and at the end, the FID "
           "proxy's features and distances"),
    Metric("timing_seconds", "s", "time of the evaluator's own cost measurement (MAC count)"),
    Metric("eval_seconds", "s", "wall time of the evaluation", in_report=True),
    Metric("overhead_fraction", "fraction", "share of eval_seconds outside training, sampling and cost measurement"),
    Metric("overhead_seconds", "s", "eval_seconds outside training, sampling and cost measurement",
           per_trial=False),
    Metric("setup_seconds", "s", "once-per-process data, FID reference and floor loading", per_trial=False),
    Metric("gate_timing_seconds", "s", "time of the gate's throughput measurement (candidate compute)",
           source="gate"),
    Metric("throughput_raw", "images/s", "throughput's median over every timing repeat, contended ones included",
           source="gate"),
    Metric("contended_repeats", "repeats", "timing repeats left out as contended (slower than 1.25x the fastest)",
           source="gate"),
    Metric("timing_repeats", "repeats", "timed repeats of the throughput measurement (adaptive: 3 to 15)",
           source="gate"),
    Metric("timing_threads", "threads", "torch CPU threads of the timing (one on the CPU; none on CUDA)",
           source="gate"),
    Metric("torch_threads", "threads", "torch CPU threads the candidate trained with (the thread policy)",
           source="search", per_trial=False),
    Metric("device", "", "the device the candidate was trained and timed on", kind="label"),
    Metric("dtype", "", "the compute dtype of training and timing (bfloat16 autocast on CUDA)", kind="label"),
    Metric("feature_kind", "", "the feature space of the FID proxy (classifier, random or inception)",
           kind="label"),
)

METRICS: dict[str, Metric] = {m.name: m for m in _ALL}
# Measured by the cheap gate, so not copied again from the evaluator's result.
GATE_METRICS: tuple[str, ...] = tuple(m.name for m in _ALL if m.source == "gate")
# The evaluator's figures a trial records as user attributes.
TRIAL_METRICS: tuple[str, ...] = tuple(m.name for m in _ALL if m.per_trial and m.source == "evaluator")
# Metric columns of the CSV reports, in this order.
REPORT_METRICS: tuple[str, ...] = tuple(m.name for m in _ALL if m.in_report)


def objective_metrics() -> dict[str, str]:
    """Metrics a space may use as objectives or constraints, with their natural direction."""
    return {m.name: m.direction for m in _ALL if m.objective and m.direction is not None}


def direction_of(name: str) -> str | None:
    """The natural direction of metric ``name`` (None for bookkeeping and unknown names)."""
    metric = METRICS.get(name)
    return metric.direction if metric is not None else None


def describe(name: str) -> str:
    """``name (unit): meaning``, for reports and notes; unknown names come back as they are."""
    metric = METRICS.get(name)
    if metric is None:
        return name
    unit = f" ({metric.unit})" if metric.unit else ""
    return f"{name}{unit}: {metric.meaning}"
