"""Which device each search worker trains on (the assignment logic, checked without a GPU)."""

from __future__ import annotations

import pytest
import torch

from evaluators.device import Precision, worker_device


@pytest.mark.parametrize(("workers", "gpus", "expected"), [
    (4, 1, [0, 0, 0, 0]),  # several workers share the one GPU
    (4, 2, [0, 1, 0, 1]),  # round-robin over the visible GPUs
    (3, 4, [0, 1, 2]),  # fewer workers than GPUs: one each
])
def test_unindexed_cuda_spreads_workers_round_robin(workers: int, gpus: int, expected: list[int]) -> None:
    devices = [worker_device(torch.device("cuda"), w, gpu_count=gpus) for w in range(workers)]
    assert [d.type for d in devices] == ["cuda"] * workers
    assert [d.index for d in devices] == expected


def test_indexed_cuda_and_cpu_are_used_as_given() -> None:
    assert [worker_device(torch.device("cuda", 1), w, gpu_count=4) for w in range(3)] == [torch.device("cuda", 1)] * 3
    assert [worker_device(torch.device("cpu"), w, gpu_count=2) for w in range(3)] == [torch.device("cpu")] * 3


def test_no_visible_gpu_still_gives_a_valid_index() -> None:
    assert worker_device(torch.device("cuda"), 5, gpu_count=0) == torch.device("cuda", 0)


def test_a_worker_gpu_gets_the_cuda_precision() -> None:
    precision = Precision.for_device(worker_device(torch.device("cuda"), 1, gpu_count=2))
    assert precision.autocast_dtype == torch.bfloat16 and precision.channels_last
