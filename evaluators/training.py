"""Brief training under one fixed recipe, shared by the proxy evaluator and ``nas.train``.

Recipe: AdamW with linear warm-up then a constant rate, global gradient-norm clipping, an EMA of
the weights for scoring, a fixed seed for initialisation, data order, timesteps and noise; on
CUDA bf16 autocast and channels_last.  Rungs at fractions of the budget call a hook with the
held-out loss so far, which may stop the run.  Failures are returned, never raised: a NaN or
infinite loss (``diverged``), an out-of-memory error (``oom``), the wall-clock cap
(``timeout``), a stop at a rung (``pruned``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from evaluators.budget import Budget
from evaluators.device import Precision, synchronize
from evaluators.ema import EMA
from evaluators.heldout import HeldOutProbe
from nas.diffusion import GaussianDiffusion

__all__ = ["RungHook", "TrainOutcome", "TrainState", "is_oom", "train"]

# teacher(student_diffusion, x_t, t) -> the teacher's prediction as the student's target (evaluators.distill).
TeacherTarget = Callable[[GaussianDiffusion, Tensor, Tensor], Tensor]
# hook(rung_index, step, val_loss) -> why to stop the run at this rung (a reason), or None to go on.
RungHook = Callable[[int, int, float], str | None]


def is_oom(err: BaseException) -> bool:
    """Whether ``err`` is an out-of-memory error (CUDA, or the CPU allocator)."""
    if isinstance(err, torch.cuda.OutOfMemoryError):
        return True
    return isinstance(err, RuntimeError) and "out of memory" in str(err).lower()


@dataclass
class TrainOutcome:
    """What brief training produced; ``status`` is ``ok`` or the failure."""

    status: str = "ok"
    reason: str = ""
    steps: int = 0
    curve: list[tuple[int, float]] = field(default_factory=list)
    rungs: list[dict[str, float]] = field(default_factory=list)
    train_seconds: float = 0.0  # time inside optimiser steps only
    rung_seconds: float = 0.0  # time spent computing rung losses
    distill_curve: list[tuple[int, float]] = field(default_factory=list)  # MSE toward the teacher, with one


@dataclass
class TrainState:
    """Everything training carries between steps; a checkpoint of ``nas.train`` is this state."""

    model: nn.Module
    ema: EMA
    optimizer: torch.optim.Optimizer
    data_generator: torch.Generator
    noise_generator: torch.Generator
    step: int = 0
    order: Tensor | None = None  # the current epoch's permutation
    cursor: int = 0  # position in ``order``

    @classmethod
    def create(cls, model: nn.Module, *, budget: Budget, seed: int) -> TrainState:
        """Optimiser, EMA and seeded generators for a freshly initialised ``model``."""
        optimizer = torch.optim.AdamW(model.parameters(), lr=budget.lr, weight_decay=budget.weight_decay)
        return cls(model=model, ema=EMA(model, decay=budget.ema_decay), optimizer=optimizer,
                   data_generator=torch.Generator().manual_seed(seed),
                   noise_generator=torch.Generator().manual_seed(seed + 1))

    def next_batch(self, images: Tensor, batch_size: int) -> Tensor:
        """The next ``batch_size`` images in a seeded, reshuffled-per-epoch order."""
        if self.order is None or self.cursor + batch_size > len(self.order):
            self.order = torch.randperm(len(images), generator=self.data_generator)
            self.cursor = 0
        idx = self.order[self.cursor:self.cursor + batch_size]
        self.cursor += batch_size
        return images[idx]


def learning_rate(step: int, budget: Budget) -> float:
    """Linear warm-up to ``budget.lr`` over ``warmup_steps``, then constant."""
    if budget.warmup_steps and step < budget.warmup_steps:
        return budget.lr * (step + 1) / budget.warmup_steps
    return budget.lr


def rung_steps(budget: Budget) -> list[int]:
    """The steps after which rung hooks run (distinct, in order, before the last step)."""
    steps = sorted({max(1, round(budget.steps * r)) for r in budget.rung_fractions})
    return [s for s in steps if s < budget.steps]


def train(state: TrainState, diffusion: GaussianDiffusion, images: Tensor, *, budget: Budget,
          device: torch.device, precision: Precision, batch_size: int | None = None, deadline: float | None = None,
          clock: Callable[[], float] = time.perf_counter, probe: HeldOutProbe | None = None,
          rung_hook: RungHook | None = None, until_step: int | None = None, curve_every: int = 1,
          teacher: TeacherTarget | None = None) -> TrainOutcome:
    """Train ``state.model`` from ``state.step`` to ``until_step`` (default ``budget.steps``).

    ``images`` stay on the CPU; each batch moves to ``device`` in ``precision``'s layout, and
    forward passes run under its autocast.  ``deadline`` is a ``clock()`` value past which the run
    stops with ``timeout`` (:func:`evaluators.contention.compute_clock` counts only its own
    compute).  Rung hooks run only when both ``probe`` and ``rung_hook`` are given.
    With a ``teacher`` (``budget.distill``; :meth:`evaluators.distill.Teacher.target`), each
    step also pulls the prediction toward the teacher's on the same noisy inputs, and that term's value is
    recorded in ``distill_curve``.  Out-of-memory errors propagate (the caller decides whether to
    retry at a smaller batch); nothing else does.
    """
    outcome = TrainOutcome(steps=state.step)
    batch_size = batch_size or budget.batch_size
    end = until_step if until_step is not None else budget.steps
    rungs = rung_steps(budget) if (probe is not None and rung_hook is not None) else []
    model = state.model.train()
    if teacher is not None and budget.distill is None:
        raise ValueError("a teacher needs a budget with distill (its weight)")
    weight = budget.distill.weight if teacher is not None and budget.distill is not None else 0.0
    parts: dict[str, float] | None = {} if teacher is not None else None
    while state.step < end:
        if deadline is not None and clock() > deadline:
            outcome.status, outcome.reason = "timeout", f"compute-time cap reached after {state.step} steps"
            break
        started = time.perf_counter()
        x0 = precision.prepare_batch(state.next_batch(images, batch_size).to(device, non_blocking=True))
        t = torch.randint(0, diffusion.num_timesteps, (x0.shape[0],), generator=state.noise_generator)
        noise = torch.randn(x0.shape, generator=state.noise_generator)
        for group in state.optimizer.param_groups:
            group["lr"] = learning_rate(state.step, budget)
        with precision.autocast(device):
            loss = diffusion.training_loss(model, x0, t=t.to(device), noise=noise.to(device),
                                           teacher=teacher,
                                           teacher_weight=weight, parts=parts)
        value = float(loss.detach())
        if not math.isfinite(value):
            outcome.status, outcome.reason = "diverged", f"loss became {value} at step {state.step + 1}"
            outcome.steps = state.step + 1
            return outcome
        state.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), budget.grad_clip)
        if not torch.isfinite(grad_norm):
            outcome.status = "diverged"
            outcome.reason = f"gradient norm became {float(grad_norm)} at step {state.step + 1}"
            outcome.steps = state.step + 1
            return outcome
        state.optimizer.step()
        state.ema.update(model)
        state.step += 1
        synchronize(device)  # the step's time must include its kernels
        outcome.train_seconds += time.perf_counter() - started
        if state.step % curve_every == 0 or state.step == end:
            outcome.curve.append((state.step, value))
            if parts:
                outcome.distill_curve.append((state.step, parts["distill"]))
        if state.step in rungs:
            rung_started = time.perf_counter()
            val, _ = probe.loss(state.ema.model, diffusion, device=device, precision=precision)  # type: ignore[union-attr]
            outcome.rung_seconds += time.perf_counter() - rung_started
            index = rungs.index(state.step)
            outcome.rungs.append({"rung": index, "step": state.step, "val_loss": val})
            why = rung_hook(index, state.step, val)  # type: ignore[misc]
            if why:
                outcome.status = "pruned"
                outcome.reason = f"stopped at rung {index} (step {state.step}, held-out loss {val:.4g}): {why}"
                break
    outcome.steps = state.step
    return outcome
