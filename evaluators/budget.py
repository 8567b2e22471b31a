"""`Budget`: how much compute the proxy evaluator spends on one candidate.

A search space names several budgets (``smoke``, ``cpu``, ``gpu`` by default); ``--budget``
picks one.  Every candidate of a study is trained under the same budget so that their scores
are comparable (DESIGN.md, "Metric definitions").
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, fields
from typing import Any

from nas.errors import ConfigError, close_match_hint

__all__ = ["DEFAULT_BUDGETS", "Budget", "Distill", "default_budget_name", "parse_budget", "parse_budgets"]


# Far above any real budget: larger values are typos that would exhaust memory or never end.
_MAXIMA: dict[str, float] = {"steps": 10**8, "batch_size": 65_536, "fid_samples": 1_000_000, "sample_steps": 10_000,
                             "warmup_steps": 10**8, "val_images": 1_000_000, "val_timesteps": 10_000,
                             "throughput_batch": 65_536, "timing_repeat_s": 60.0}


@dataclass(frozen=True)
class Distill:
    """A budget's distillation setting: the teacher's run directory and the weight of its term
    (what it does: :mod:`evaluators.distill`)."""

    teacher: str
    weight: float = 1.0

    @classmethod
    def parse(cls, raw: Any) -> Distill | None:
        """``None``, a :class:`Distill`, or a mapping ``{teacher: PATH, weight: W}``."""
        if raw is None or isinstance(raw, Distill):
            return raw
        if not isinstance(raw, dict) or "teacher" not in raw or set(raw) - {"teacher", "weight"}:
            raise ConfigError(f"expected {{teacher: RUN_DIR, weight: W}}, got {raw!r}", key="distill")
        teacher, weight = raw["teacher"], raw.get("weight", 1.0)
        if not isinstance(teacher, str) or not teacher:
            raise ConfigError(f"expected the path of a nas.train run directory, got {teacher!r}",
                              key="distill.teacher")
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not weight > 0:
            raise ConfigError(f"expected a number above 0, got {weight!r}", key="distill.weight")
        return cls(teacher=teacher, weight=float(weight))


@dataclass(frozen=True)
class Budget:
    """The fixed training-and-scoring recipe for one candidate.

    Args:
        steps: optimiser steps of brief training.
        batch_size: images per step.
        fid_samples: generated images scored by the FID proxy (and the real-vs-real floor).
        sample_steps: DDIM steps used to generate them.
        lr: peak AdamW learning rate, reached after ``warmup_steps``.
        warmup_steps: linear warm-up length; 0 disables it.
        weight_decay: AdamW weight decay.
        grad_clip: global gradient-norm clip.
        ema_decay: EMA of the weights used for scoring (0 scores the raw weights).
        rungs: fractions of ``steps`` at which the held-out loss is reported to a hook that may
            stop the run early (multi-fidelity scheduling, :mod:`nas.scheduling`); not given, the
            geometric ladder of ``eta``: ``1/eta**2`` and ``1/eta`` (1/9 and 1/3 for 3).
        eta: the successive-halving rate: at each rung the top ``1/eta`` of the candidates there
            continue (``halving`` rule), and the default rungs are its powers.
        val_images: held-out images in the validation loss.
        val_timesteps: size of the fixed timestep grid of the validation loss.
        throughput_batch: batch size of the throughput measurement.
        timing_repeat_s: the shortest timed repeat of the throughput measurement, in seconds (a
            short burst elsewhere on the machine then spoils one repeat, not the figure).
        distill: ``{teacher: RUN_DIR, weight: W}`` trains every candidate toward a trained
            teacher's predictions as well as the target (:mod:`evaluators.distill`); none by default.
        time_limit_s: cap of one evaluation's own compute (CPU seconds per thread on the CPU, wall
            seconds on CUDA; :func:`evaluators.contention.compute_clock`); past it the candidate is
            ``timeout``, so a busy machine alone does not time a candidate out.
    """

    steps: int = 100
    batch_size: int = 32
    fid_samples: int = 256
    sample_steps: int = 10
    lr: float = 2e-3
    warmup_steps: int = 12
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    ema_decay: float = 0.99
    rungs: tuple[float, ...] | None = None
    eta: float = 3.0
    val_images: int = 96
    val_timesteps: int = 8
    throughput_batch: int = 32
    timing_repeat_s: float = 0.05
    time_limit_s: float = 600.0
    distill: Distill | None = None

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "distill":
                object.__setattr__(self, "distill", Distill.parse(value))
                continue
            if f.name == "rungs":
                if value is None:
                    continue
                if isinstance(value, list):
                    value = tuple(value)
                    object.__setattr__(self, "rungs", value)
                if not isinstance(value, tuple) or not all(
                    isinstance(r, (int, float)) and not isinstance(r, bool) and 0 < r < 1 for r in value
                ):
                    raise ConfigError(f"expected a list of fractions in (0, 1), got {value!r}", key="rungs")
                if list(value) != sorted(set(value)):
                    raise ConfigError(f"expected increasing fractions, got {list(value)!r}", key="rungs")
                continue
            expected = int if isinstance(f.default, int) else float
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
            if expected is int:
                ok = ok and isinstance(value, int)
            if not ok:
                raise ConfigError(f"expected {expected.__name__}, got {value!r}", key=f.name)
            if value != value or value in (float("inf"), float("-inf")):  # NaN or infinity
                raise ConfigError(f"expected a finite number, got {value!r}", key=f.name)
            if value < 0 or (value == 0 and f.name in {"steps", "batch_size", "sample_steps",
                                                       "val_images", "val_timesteps",
                                                       "throughput_batch", "time_limit_s"}):
                raise ConfigError(f"expected a positive value, got {value!r}", key=f.name)
            if value > _MAXIMA.get(f.name, float("inf")):
                raise ConfigError(f"expected at most {_MAXIMA[f.name]:,}, got {value!r}", key=f.name)
        if not self.eta > 1:
            raise ConfigError(f"expected a value above 1, got {self.eta!r}", key="eta")
        if self.ema_decay >= 1:
            raise ConfigError(f"expected a value below 1, got {self.ema_decay!r}", key="ema_decay")
        if self.fid_samples == 1:
            raise ConfigError("expected 0 (no FID proxy) or at least 2 samples, got 1", key="fid_samples")

    @property
    def rung_fractions(self) -> tuple[float, ...]:
        """The rungs as fractions of ``steps``: ``rungs``, else the geometric ladder of ``eta``."""
        if self.rungs is not None:
            return self.rungs
        return (self.eta ** -2, 1.0 / self.eta)

    def scaled(self, fraction: float) -> Budget:
        """The same recipe with ``fraction`` of the training steps (warm-up scaled too)."""
        steps = max(1, round(self.steps * fraction))
        warmup = min(round(self.warmup_steps * fraction), steps - 1)
        return dataclasses.replace(self, steps=steps, warmup_steps=max(warmup, 0))

    def to_dict(self) -> dict[str, Any]:
        """Plain data, as stored with results."""
        data = dataclasses.asdict(self)
        data["rungs"] = list(self.rungs) if self.rungs is not None else None
        if self.distill is None:  # budgets without it keep the plain data they always had
            del data["distill"]
        return data


def parse_budget(data: Any, *, base: Budget | None = None) -> Budget:
    """Budget from a mapping; keys not given keep ``base``'s (or the default) values."""
    if not isinstance(data, dict):
        raise ConfigError(f"expected a mapping of budget fields, got {data!r}")
    valid = [f.name for f in fields(Budget)]
    for key in data:
        if key not in valid:
            raise ConfigError(f"unknown key{close_match_hint(key, valid)}; valid keys are {valid}", key=key)
    return dataclasses.replace(base or Budget(), **data)


def parse_budgets(raw: Any, *, source: str | None = None) -> dict[str, Budget]:
    """The built-in budgets with ``raw`` (a space's or an export's ``budgets:``) merged over them.

    A name that is also built in keeps the built-in values for keys it does not give; errors
    name ``source`` and the key path (``budgets.<name>.<key>``).
    """
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"expected a mapping of budget names, got {raw!r}", key="budgets", source=source)
    budgets = dict(DEFAULT_BUDGETS)
    for name, fields_ in raw.items():
        try:
            budgets[str(name)] = parse_budget(fields_, base=DEFAULT_BUDGETS.get(name))
        except ConfigError as err:
            raise err.within(source=source, key_prefix=f"budgets.{name}") from None
    return budgets


def default_budget_name(device_type: str) -> str:
    """The budget used when none is named: ``gpu`` for a CUDA device, else ``cpu``."""
    return "gpu" if device_type == "cuda" else "cpu"


# Sized so that: smoke checks plumbing in seconds; cpu fits ~1 minute per candidate on 2 cores;
# gpu is a real proxy on one modern GPU.
DEFAULT_BUDGETS: dict[str, Budget] = {
    "smoke": Budget(steps=4, batch_size=8, fid_samples=32, sample_steps=4, warmup_steps=1,
                    val_images=32, val_timesteps=4, throughput_batch=8, timing_repeat_s=0.01, time_limit_s=120.0),
    "cpu": Budget(),
    "gpu": Budget(steps=3000, batch_size=128, fid_samples=2048, sample_steps=25, lr=1e-3,
                  warmup_steps=200, ema_decay=0.999, val_images=1000, val_timesteps=10,
                  throughput_batch=128, time_limit_s=1800.0),
}
