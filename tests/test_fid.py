"""FID proxy: the classifier, its disk cache, and that the distances respond to image quality."""

from __future__ import annotations

import dataclasses
import itertools
import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from evaluators.classifier import TrainConfig, train_classifier
from evaluators.data import ImageData, load_dataset
from evaluators.fid import FidReference, frechet_distance, get_reference, kid, score_samples
from evaluators.frechet import feature_stats
from nas.errors import ConfigError


@pytest.fixture(scope="session")
def fid_cache(tmp_path_factory: pytest.TempPathFactory):
    return tmp_path_factory.mktemp("unet-nas-cache")


@pytest.fixture(scope="session")
def mnist32() -> ImageData:
    return load_dataset("mnist", image_size=32, channels=1)


@pytest.fixture(scope="session")
def reference(mnist32: ImageData, fid_cache) -> FidReference:
    # The one classifier training of the session (~10-20 s on 2 cores).
    return get_reference(mnist32, cache_dir=fid_cache)


def _noise(shape: tuple[int, ...], seed: int) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


def _blur(images: torch.Tensor, sigma: float) -> torch.Tensor:
    radius = round(3 * sigma)
    taps = torch.exp(-(torch.arange(-radius, radius + 1, dtype=torch.float32) ** 2) / (2 * sigma**2))
    taps = taps / taps.sum()
    x = F.pad(images, (radius,) * 4, mode="replicate")
    x = F.conv2d(x, taps.view(1, 1, 1, -1))  # horizontal pass (1 channel)
    return F.conv2d(x, taps.view(1, 1, -1, 1))  # vertical pass


def test_classifier_accuracy_and_first_build(reference: FidReference) -> None:
    # The README's figures (`python -m pytest tests/test_fid.py -s -k first_build`).
    print(f"classifier (MNIST at 32 px): {reference.accuracy:.1%} held-out accuracy, "
          f"trained once in {reference.train_seconds:.1f} s")
    assert reference.feature_kind == "classifier"
    assert reference.accuracy is not None and reference.accuracy >= 0.97
    assert reference.real_features.shape == (1000, 128)
    assert reference.cache_path is not None and reference.cache_path.is_file()


def test_second_call_loads_from_disk(reference: FidReference, mnist32: ImageData, fid_cache) -> None:
    path = reference.cache_path
    mtime = os.stat(path).st_mtime_ns
    again = get_reference(mnist32, cache_dir=fid_cache)
    assert again.from_cache and not reference.from_cache
    assert again.cache_path == path and os.stat(path).st_mtime_ns == mtime  # not rewritten
    assert again.accuracy == reference.accuracy
    np.testing.assert_array_equal(again.real_features, reference.real_features)
    batch = mnist32.held_out[:64]
    np.testing.assert_allclose(again.features(batch), reference.features(batch), rtol=1e-5, atol=1e-5)
    assert not [p for p in os.listdir(fid_cache) if p.endswith(".tmp")]  # atomic write left nothing


def test_real_vs_real_far_below_noise(reference: FidReference, mnist32: ImageData) -> None:
    floor = reference.floor(500)
    noise = score_samples(_noise((500, 1, 32, 32), 0).clamp(-1, 1), reference)
    real = score_samples(mnist32.train[-500:], reference)  # other real images than the floor's draw
    assert noise["fid_floor"] == floor
    assert real["fid_proxy"] * 10 < noise["fid_proxy"]
    assert floor * 10 < noise["fid_proxy"]
    assert set(real) == {"fid_proxy", "fid_floor", "kid_mean", "kid_std", "n", "feature_kind"}
    assert real["n"] == 500 and real["feature_kind"] == "classifier"
    # KID: near zero for real vs real, relative to its value for noise.
    assert abs(real["kid_mean"]) < 1e-3 * noise["kid_mean"]
    assert noise["kid_mean"] > 10 * noise["kid_std"] > 0


def test_fd_rises_with_noise_and_blur(reference: FidReference, mnist32: ImageData) -> None:
    real = mnist32.train[:300]
    noisy = [
        reference.distance(reference.features((real + s * _noise(real.shape, 1)).clamp(-1, 1)))
        for s in (0.0, 0.1, 0.2, 0.4, 0.8)
    ]
    assert all(a < b for a, b in itertools.pairwise(noisy)), noisy
    blurred = [reference.distance(reference.features(_blur(real, s))) for s in (0.5, 1.0, 1.5, 2.0)]
    assert noisy[0] < blurred[0] and all(a < b for a, b in itertools.pairwise(blurred)), blurred


def test_score_samples_survives_nan(reference: FidReference) -> None:
    images = _noise((16, 1, 32, 32), 2)
    images[:4] = float("nan")
    scores = score_samples(images, reference, kid_subsets=5)
    assert np.isfinite(scores["fid_proxy"]) and np.isfinite(scores["kid_mean"])
    with pytest.raises(ValueError, match="expected 32x32 images"):
        reference.features(torch.zeros(2, 1, 28, 28))


def test_frechet_distance_closed_forms() -> None:
    rng = np.random.default_rng(0)
    feats = rng.normal(size=(400, 16))
    mu, sigma = feature_stats(feats)
    assert abs(frechet_distance(mu, sigma, mu, sigma)) < 1e-6
    # Diagonal Gaussians: |mu1 - mu2|^2 + sum (sqrt(v1) - sqrt(v2))^2.
    mu1, mu2 = rng.normal(size=8), rng.normal(size=8)
    v1, v2 = rng.uniform(0.1, 3.0, size=8), rng.uniform(0.1, 3.0, size=8)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(v1) - np.sqrt(v2)) ** 2)
    assert frechet_distance(mu1, np.diag(v1), mu2, np.diag(v2)) == pytest.approx(expected, rel=1e-9)
    # Fewer samples than dimensions: singular covariances still give a finite, non-negative FD.
    few_mu, few_sigma = feature_stats(rng.normal(size=(10, 32)))
    other_mu, other_sigma = feature_stats(rng.normal(size=(12, 32)) + 1.0)
    value = frechet_distance(few_mu, few_sigma, other_mu, other_sigma)
    assert np.isfinite(value) and value > 32 * 0.9  # the mean shift alone contributes 32


def test_kid_unbiased_and_fixed_by_seed() -> None:
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(300, 8)), rng.normal(size=(300, 8))
    same_mean, same_std = kid(a, b, subsets=20, subset_size=100)
    far_mean, _ = kid(a, b + 1.0, subsets=20, subset_size=100)
    assert abs(same_mean) < 3 * same_std + 1e-3 and far_mean > 50 * abs(same_mean)
    assert kid(a, b, subsets=20, subset_size=100, seed=3) == kid(a, b, subsets=20, subset_size=100, seed=3)


def test_training_is_deterministic() -> None:
    data = load_dataset("mnist", image_size=16, channels=1)
    config = TrainConfig(epochs=1, batch_size=64, max_steps=3)
    nets = [
        train_classifier(data.train[:256], data.train_labels[:256], num_classes=10, seed=5, config=config)
        for _ in range(2)
    ]
    for (name, p), q in zip(nets[0].state_dict().items(), nets[1].state_dict().values(), strict=True):
        assert torch.equal(p, q), name


def test_random_features_for_unlabelled_data(tmp_path) -> None:
    labelled = load_dataset("mnist", image_size=16, channels=1)
    data = dataclasses.replace(labelled, train_labels=None, held_out_labels=None, num_classes=None)
    ref = get_reference(data, cache_dir=tmp_path)
    assert ref.feature_kind == "random" and ref.accuracy is None and not ref.from_cache
    floor = ref.floor(300)
    noise = ref.distance(ref.features(_noise((300, 1, 16, 16), 4).clamp(-1, 1)))
    blurred = ref.distance(ref.features(_blur(data.train[:300], 1.5)))
    assert floor * 10 < noise and floor < blurred
    again = get_reference(data, cache_dir=tmp_path)
    assert again.from_cache
    np.testing.assert_allclose(again.features(data.held_out[:8]), ref.features(data.held_out[:8]), atol=1e-5)
    with pytest.raises(ConfigError, match="'classifier' needs labels"):
        get_reference(data, cache_dir=tmp_path, feature_kind="classifier")


def test_corrupt_cache_is_rebuilt(tmp_path) -> None:
    data = load_dataset("digits", image_size=8, channels=1)
    ref = get_reference(data, cache_dir=tmp_path, feature_kind="random")
    ref.cache_path.write_bytes(b"truncated")
    with pytest.warns(UserWarning, match="ignoring unreadable FID cache"):
        rebuilt = get_reference(data, cache_dir=tmp_path, feature_kind="random")
    assert not rebuilt.from_cache
    np.testing.assert_allclose(rebuilt.real_features, ref.real_features, atol=1e-6)
    assert get_reference(data, cache_dir=tmp_path, feature_kind="random").from_cache


def test_bad_feature_kinds(tmp_path, monkeypatch) -> None:
    data = load_dataset("digits", image_size=8, channels=1)
    with pytest.raises(
        ConfigError, match=r"unknown feature_kind 'clasifier' \(did you mean 'classifier'\?\)"
    ):
        get_reference(data, cache_dir=tmp_path, feature_kind="clasifier")
    monkeypatch.delenv("UNET_NAS_INCEPTION_WEIGHTS", raising=False)
    with pytest.raises(ConfigError, match="inception"):
        get_reference(data, cache_dir=tmp_path, feature_kind="inception")


def test_the_reference_does_not_depend_on_the_callers_thread_count(mnist32: ImageData, tmp_path) -> None:
    """The classifier trains with a fixed thread count: a busy machine (where the search picks one
    thread) and a quiet one (two) cache the same reference, so FID proxies stay comparable."""
    config = TrainConfig(epochs=1, max_steps=12)
    built = []
    old = torch.get_num_threads()
    try:
        for threads in (2, 1):
            torch.set_num_threads(threads)
            built.append(get_reference(mnist32, cache_dir=tmp_path / str(threads), train_config=config))
            assert torch.get_num_threads() == threads  # restored for the caller
    finally:
        torch.set_num_threads(old)
    assert not built[0].from_cache and not built[1].from_cache
    np.testing.assert_array_equal(built[0].mu, built[1].mu)
    np.testing.assert_array_equal(built[0].real_features, built[1].real_features)
