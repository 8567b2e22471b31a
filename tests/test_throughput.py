"""Tests for evaluators/throughput.py: throughput report, sampling cost, errors.

The static costs (parameters, MACs) are tested in tests/test_cost.py.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from evaluators.device import resolve_device
from evaluators.throughput import DTYPES, ThroughputReport, measure_throughput, sampling_cost, uncontended
from nas.errors import ConfigError

SHAPE = (4, 8, 8)


class TinyDenoiser(nn.Module):
    """conv3x3 (c -> hidden) + time linear + conv3x3 (hidden -> c); signature forward(x, t)."""

    def __init__(self, channels: int = 4, hidden: int = 8) -> None:
        super().__init__()
        self.conv_in = nn.Conv2d(channels, hidden, 3, padding=1)
        self.time = nn.Linear(1, hidden)
        self.norm = nn.GroupNorm(2, hidden)
        self.drop = nn.Dropout(0.1)
        self.conv_out = nn.Conv2d(hidden, channels, 3, padding=1)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(x)  # (B, hidden, H, W)
        h = h + self.time(t.float()[:, None])[:, :, None, None]  # broadcast (B, hidden, 1, 1)
        return self.conv_out(self.drop(torch.relu(self.norm(h))))


class CallCounter(nn.Module):
    """Wraps a denoiser and records the batch size of every forward call."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.batches: list[int] = []

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        assert t.shape == (x.shape[0],)
        self.batches.append(x.shape[0])
        return self.inner(x, t)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def test_report_fields_and_repeats_honoured() -> None:
    model = CallCounter(TinyDenoiser())
    report = measure_throughput(model, input_shape=SHAPE, batch_size=4, device="cpu",
                                repeats=5, warmup=2, min_time_s=0.0)
    assert isinstance(report, ThroughputReport)
    assert report.iters_per_repeat == report.latency_iters_per_repeat == 1
    # warm-up then repeats at batch 4, then the same at batch 1 for latency
    assert model.batches == [4] * (2 + 5) + [1] * (2 + 5)
    lo, hi = report.images_per_s_spread
    assert 0 < lo <= report.images_per_s <= hi
    lo, hi = report.latency_ms_spread
    assert 0 < lo <= report.latency_ms <= hi
    assert report.peak_mem_mb is None  # not measurable per network on CPU (documented)
    assert (report.device, report.dtype, report.batch_size, report.repeats) == ("cpu", "float32", 4, 5)
    assert report.input_shape == SHAPE and report.spread == "min_max"
    assert report.seconds_per_evaluation == pytest.approx(4 / report.images_per_s)
    data = report.to_dict()
    assert set(data) == {f for f in ThroughputReport.__dataclass_fields__}
    assert isinstance(data["images_per_s_spread"], list)


def test_min_time_makes_repeats_run_several_forwards() -> None:
    class Cheap(nn.Module):  # microseconds per call, far below min_time_s even on a busy machine
        def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            return x * 0.5

    model = CallCounter(Cheap())
    report = measure_throughput(model, input_shape=SHAPE, batch_size=1, device="cpu",
                                repeats=3, warmup=1, min_time_s=0.05, num_threads=1)
    assert report.iters_per_repeat > 1
    # batch 1: the throughput run doubles as the latency run
    assert len(model.batches) == 1 + 3 * report.iters_per_repeat
    assert report.latency_iters_per_repeat == report.iters_per_repeat
    assert report.latency_ms == pytest.approx(1000.0 / report.images_per_s)


def test_training_flags_restored_and_eval_used() -> None:
    seen: list[bool] = []
    model = TinyDenoiser().train()
    model.norm.eval()  # a mixed state must come back exactly
    model.register_forward_pre_hook(lambda mod, args: seen.append(mod.training))
    measure_throughput(model, input_shape=SHAPE, batch_size=2, device="cpu", repeats=2,
                       warmup=1, min_time_s=0.0)
    assert seen and not any(seen)
    assert model.training and model.conv_in.training and not model.norm.training
    assert all(p.device.type == "cpu" and p.requires_grad for p in model.parameters())


def test_num_threads_applied_and_restored() -> None:
    seen: list[int] = []
    model = TinyDenoiser()
    model.register_forward_pre_hook(lambda mod, args: seen.append(torch.get_num_threads()))
    before = torch.get_num_threads()
    report = measure_throughput(model, input_shape=SHAPE, batch_size=1, device="cpu", repeats=2,
                                warmup=1, min_time_s=0.0, num_threads=1)
    assert report.num_threads == 1 and set(seen) == {1}
    assert torch.get_num_threads() == before


def test_bfloat16_autocast_on_cpu() -> None:
    dtypes: list[torch.dtype] = []
    model = TinyDenoiser()
    model.conv_out.register_forward_hook(lambda mod, args, out: dtypes.append(out.dtype))
    report = measure_throughput(model, input_shape=SHAPE, batch_size=2, device="cpu",
                                dtype="bfloat16", repeats=2, warmup=1, min_time_s=0.0)
    assert report.dtype == "bfloat16" and report.images_per_s > 0
    assert set(dtypes) == {torch.bfloat16}
    assert model.conv_out.weight.dtype == torch.float32  # autocast leaves weights alone


def test_sampling_cost_arithmetic() -> None:
    report = ThroughputReport(
        images_per_s=200.0, images_per_s_spread=(150.0, 250.0), images_per_s_raw=190.0, contended_repeats=0,
        latency_ms=4.0,
        latency_ms_spread=(3.0, 5.0), peak_mem_mb=None, device="cpu", device_name="x",
        dtype="float32", batch_size=8, input_shape=SHAPE, repeats=5, warmup=2,
        iters_per_repeat=1, latency_iters_per_repeat=1, num_threads=2)
    cost = sampling_cost(report, steps=10)
    assert cost["seconds_per_batch"] == pytest.approx(10 * 8 / 200.0)
    assert cost["seconds_per_image"] == pytest.approx(10 / 200.0)
    assert cost["images_per_s"] == pytest.approx(20.0)
    assert cost["latency_s"] == pytest.approx(0.04)
    assert cost["steps"] == 10 and cost["batch_size"] == 8
    with pytest.raises(ConfigError, match="steps"):
        sampling_cost(report, steps=0)


@pytest.mark.parametrize("dtype", ["float16", "fp32", "bf16"])
def test_bad_dtype_lists_valid(dtype: str) -> None:
    with pytest.raises(ConfigError, match="float32") as err:
        measure_throughput(TinyDenoiser(), input_shape=SHAPE, batch_size=1, device="cpu", dtype=dtype)
    assert err.value.key == "dtype" and all(name in str(err.value) for name in DTYPES)


@pytest.mark.parametrize("device", ["gpu", "cuda:x", "mps", ""])
def test_bad_device_lists_valid(device: str) -> None:
    with pytest.raises(ConfigError, match=r"\['cpu', 'cuda'\]") as err:
        resolve_device(device)
    assert err.value.key == "device"


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_unavailable_is_a_config_error() -> None:
    model = TinyDenoiser()
    with pytest.raises(ConfigError, match="CUDA is not available"):
        measure_throughput(model, input_shape=SHAPE, batch_size=1, device="cuda")
    assert all(p.device.type == "cpu" for p in model.parameters())


@pytest.mark.parametrize("kwargs", [
    {"input_shape": (4, 8)}, {"batch_size": 0}, {"repeats": 0}, {"warmup": -1}, {"min_time_s": -1.0},
    {"num_threads": 0},
])
def test_bad_sizes_are_config_errors(kwargs: dict) -> None:
    args = {"input_shape": SHAPE, "batch_size": 1, "device": "cpu", **kwargs}
    with pytest.raises(ConfigError):
        measure_throughput(TinyDenoiser(), **args)


def test_tiny_unet_is_measured_and_left_as_it_was() -> None:
    from nas.spec import LevelSpec, UNetSpec
    from nas.unet import build_unet

    spec = UNetSpec(image_size=8, in_channels=1, base_channels=8, norm_groups=2, head_channels=8,
                    levels=(LevelSpec(channel_mult=1, blocks=1, decoder_blocks=1),
                            LevelSpec(channel_mult=2, blocks=1, decoder_blocks=1)))
    model = build_unet(spec).train()
    report = measure_throughput(model, input_shape=(1, 8, 8), batch_size=2, device="cpu", repeats=2,
                                warmup=1, min_time_s=0.0)
    assert report.images_per_s > 0 and report.latency_ms > 0
    assert all(m.training for m in model.modules())


def test_contended_repeats_are_left_out_of_the_headline() -> None:
    # Contention only ever adds time: a repeat well above the fastest was disturbed.
    kept, dropped = uncontended([0.010, 0.011, 0.030, 0.0105, 0.025])
    assert kept == [0.010, 0.011, 0.0105] and dropped == 2
    report = measure_throughput(TinyDenoiser(), input_shape=SHAPE, batch_size=4, device="cpu", repeats=5)
    assert report.contended_repeats >= 0 and report.images_per_s_raw > 0
    assert report.images_per_s >= report.images_per_s_raw * 0.999  # dropping slow repeats never lowers it
