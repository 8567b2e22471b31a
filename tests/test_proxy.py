"""The proxy evaluator: metrics, failures kept inside, determinism, learning with budget, CLI."""

from __future__ import annotations

import dataclasses
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from evaluators.budget import DEFAULT_BUDGETS, Budget
from evaluators.proxy import EvalContext, evaluate
from nas.spec import LevelSpec, UNetSpec

REQUIRED = ("status", "val_loss", "fid_proxy", "fid_floor", "kid_mean", "kid_std", "throughput", "latency_ms",
            "params", "macs", "peak_mem_mb", "train_seconds", "eval_seconds", "steps", "curve", "device", "dtype",
            "overhead_fraction")

# A small point of light.yaml: cheap enough to train at the full `cpu` budget in a test.
SMALL = UNetSpec(image_size=28, in_channels=1, base_channels=8,
                 levels=(LevelSpec(channel_mult=1, blocks=1, decoder_blocks=2),
                         LevelSpec(channel_mult=2, blocks=1, decoder_blocks=2, attention="linear")),
                 mid_attention="none", head_channels=16, norm_groups=4, resample="avgpool")
SMOKE = DEFAULT_BUDGETS["smoke"]


@pytest.fixture(scope="module")
def context() -> EvalContext:
    return EvalContext.load(dataset="mnist", image_size=28, channels=1, device="cpu")


def test_smoke_evaluation_reports_every_metric(context: EvalContext, tmp_path: Path) -> None:
    result = evaluate(SMALL, budget=SMOKE, context=context, artifacts_dir=tmp_path)
    data = result.to_dict()
    assert data["status"] == "ok", data["reason"]
    for key in REQUIRED:
        assert key in data
    for key in ("val_loss", "fid_proxy", "fid_floor", "kid_mean", "throughput", "latency_ms"):
        assert math.isfinite(data[key]), key
    assert data["params"] == sum(p.numel() for p in __import__("nas").build_unet(SMALL).parameters())
    assert data["steps"] == SMOKE.steps and len(data["curve"]) == SMOKE.steps
    assert len(data["val_loss_by_t"]) == SMOKE.val_timesteps
    assert data["fid_floor"] < data["fid_proxy"]  # 4 training steps are far from the data
    assert (tmp_path / "samples.png").stat().st_size > 0
    json.dumps(data)  # serialisable as the CLI prints it


def test_same_seed_gives_identical_metrics(context: EvalContext) -> None:
    a = evaluate(SMALL, budget=SMOKE, context=context, seed=3)
    b = evaluate(SMALL, budget=SMOKE, context=context, seed=3)
    c = evaluate(SMALL, budget=SMOKE, context=context, seed=4)
    assert a.deterministic_part() == b.deterministic_part()
    assert a.val_loss != c.val_loss


def test_rung_hook_sees_losses_and_can_stop(context: EvalContext) -> None:
    seen = []

    def hook(rung: int, step: int, val_loss: float) -> str | None:
        seen.append((rung, step, val_loss))
        return "the test stops it" if rung == 1 else None

    budget = dataclasses.replace(SMOKE, steps=8, rungs=(0.25, 0.5))
    result = evaluate(SMALL, budget=budget, context=context, rung_hook=hook)
    assert [(r, s) for r, s, _ in seen] == [(0, 2), (1, 4)]
    assert result.status == "pruned" and result.steps == 4
    assert result.reason.startswith("stopped at rung 1 (step 4, held-out loss ") and result.reason.endswith(
        "): the test stops it")
    # Neither scored on the full held-out probe nor sampled: the rungs' losses are what it reports.
    assert result.val_loss is None and result.fid_proxy is None and result.scoring_seconds > 0
    assert [r["val_loss"] for r in result.rungs] == [v for _, _, v in seen]


def test_divergence_is_reported_with_its_step(context: EvalContext) -> None:
    # AdamW moves each weight by about lr per step whatever the gradient: 1e30 overflows float32.
    budget = dataclasses.replace(SMOKE, lr=1e30, warmup_steps=0, steps=6)
    result = evaluate(SMALL, budget=budget, context=context)
    assert result.status == "diverged"
    assert "at step" in result.reason and 1 <= result.steps <= 6


class _OOMOnBigBatches(torch.nn.Module):
    """Wraps a U-Net; raises CUDA's out-of-memory error for training batches above ``limit``."""

    def __init__(self, inner: torch.nn.Module, limit: int) -> None:
        super().__init__()
        self.inner, self.limit = inner, limit

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if self.training and x.shape[0] > self.limit:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (simulated)")
        return self.inner(x, t)


@pytest.mark.parametrize(("limit", "status", "batch"), [(4, "ok", 4), (0, "oom", 4)])
def test_out_of_memory_retries_at_half_batch(context: EvalContext, monkeypatch: pytest.MonkeyPatch,
                                             limit: int, status: str, batch: int) -> None:
    import nas.unet

    real = nas.unet.build_unet
    monkeypatch.setattr(nas.unet, "build_unet", lambda spec: _OOMOnBigBatches(real(spec), limit))
    result = evaluate(SMALL, budget=SMOKE, context=context)
    assert result.status == status, result.reason
    assert result.batch_size == batch  # the retry ran at half of SMOKE.batch_size
    if status == "oom":
        assert "out of memory" in result.reason


def test_time_cap_gives_timeout(context: EvalContext) -> None:
    result = evaluate(SMALL, budget=dataclasses.replace(SMOKE, time_limit_s=1e-6), context=context)
    assert result.status == "timeout" and "compute-time cap" in result.reason


def test_the_cap_counts_own_compute_so_waiting_for_a_busy_machine_is_not_a_timeout() -> None:
    import time

    from evaluators.contention import compute_clock

    clock = compute_clock(torch.device("cpu"))
    start = clock()
    time.sleep(0.3)  # what a process waiting for the CPU experiences: wall time without compute
    assert clock() - start < 0.05
    deadline = time.perf_counter() + 0.2
    while time.perf_counter() < deadline:  # real compute advances it
        sum(range(1000))
    assert clock() - start > 0.05


def test_unbuildable_spec_is_invalid(context: EvalContext) -> None:
    wrong_size = dataclasses.replace(SMALL, image_size=32)
    result = evaluate(wrong_size, budget=SMOKE, context=context)
    assert result.status == "invalid"
    assert "the data has (1, 28, 28)" in result.reason


@pytest.mark.slow
def test_full_budget_beats_a_tenth_of_it(context: EvalContext) -> None:
    """Held-out loss and FID proxy are clearly better at the `cpu` budget than at a tenth (one seed: the
    margins below are several times the seed noise measured in results/benchmarks/proxy_fidelity/)."""
    budget: Budget = DEFAULT_BUDGETS["cpu"]
    short = evaluate(SMALL, budget=budget.scaled(0.1), context=context, seed=0)
    full = evaluate(SMALL, budget=budget, context=context, seed=0)
    assert short.status == full.status == "ok"
    print(f"val_loss {short.val_loss:.4f} -> {full.val_loss:.4f}, "
          f"fid_proxy {short.fid_proxy:.2f} -> {full.fid_proxy:.2f} (floor {full.fid_floor:.2f}), "
          f"overhead {full.overhead_fraction:.1%} of {full.eval_seconds:.1f} s")
    assert full.val_loss < 0.8 * short.val_loss
    assert full.fid_proxy < 0.7 * short.fid_proxy


def test_cli_prints_one_json_object(tmp_path: Path) -> None:
    spec_path = tmp_path / "spec.yaml"
    spec_path.write_text(SMALL.to_yaml())
    proc = subprocess.run([sys.executable, "-m", "evaluators", "--config", str(spec_path), "--budget", "smoke",
                           "--device", "cpu", "--json"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    for key in REQUIRED:
        assert key in data


def test_cli_bad_input_is_one_line_exit_2(tmp_path: Path) -> None:
    spec_path = tmp_path / "spec.yaml"
    spec_path.write_text("levels: [{conv: resnet}]\n")
    proc = subprocess.run([sys.executable, "-m", "evaluators", "--config", str(spec_path), "--budget", "smoke"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1
    assert f"{spec_path}: levels[0].conv: unknown value 'resnet'" in proc.stderr
    spec_path.write_text(SMALL.to_yaml())
    proc = subprocess.run([sys.executable, "-m", "evaluators", "--config", str(spec_path), "--budget", "huge"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "--budget: unknown budget 'huge'" in proc.stderr


def test_floor_is_setup_not_per_candidate_overhead(context: EvalContext) -> None:
    """The real-vs-real floor depends on the budget only: computed once, counted as setup."""
    before = context.setup_seconds
    context.prepare(SMOKE)
    once = context.setup_seconds
    context.prepare(SMOKE)
    assert once >= before and context.setup_seconds - once < 0.05
    result = evaluate(SMALL, budget=SMOKE, context=context)
    assert result.fid_floor == context.reference.floor(SMOKE.fid_samples, seed=0)
    productive = result.train_seconds + result.sampling_seconds + result.timing_seconds
    assert abs(result.overhead_seconds - (result.eval_seconds - productive)) < 1e-6
