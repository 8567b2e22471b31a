"""Dataset loading: shapes, ranges, splits, determinism, every source, and clear errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from evaluators.data import DATASETS, ImageData, dataset_names, load_dataset, register_dataset
from evaluators.datasets.builtin import _mnist_arrays
from nas.errors import ConfigError


def _check_range(data: ImageData) -> None:
    for x in (data.train, data.held_out):
        assert x.dtype == torch.float32
        assert float(x.min()) >= -1.0 and float(x.max()) <= 1.0


@pytest.mark.parametrize("size", [28, 32])
def test_mnist_shapes_split_and_determinism(size: int) -> None:
    data = load_dataset("mnist", image_size=size, channels=1)
    assert data.train.shape == (4000, 1, size, size)
    assert data.held_out.shape == (1000, 1, size, size)
    _check_range(data)
    assert data.num_classes == 10 and data.image_size == size and data.channels == 1
    assert data.train_labels is not None and data.held_out_labels is not None
    assert data.train_labels.dtype == torch.long
    # Stratified: 100 held-out images of each of the 10 digits.
    assert torch.bincount(data.held_out_labels).tolist() == [100] * 10
    assert float(data.train.min()) == -1.0 and float(data.train.max()) == 1.0  # full range used
    assert f"{size}px" in data.key and "mnist" in data.key
    again = load_dataset("mnist", image_size=size, channels=1)
    assert torch.equal(again.train, data.train) and torch.equal(again.held_out_labels, data.held_out_labels)
    assert again.key == data.key


def test_mnist_split_depends_on_seed_and_fraction() -> None:
    a = load_dataset("mnist", image_size=28, channels=1, seed=0)
    b = load_dataset("mnist", image_size=28, channels=1, seed=1)
    assert not torch.equal(a.held_out, b.held_out) and a.key != b.key
    c = load_dataset("mnist", image_size=28, channels=1, held_out=0.1)
    assert len(c.held_out) == 500 and len(c.train) == 4500 and c.key != a.key


def test_mnist_28_to_32_pads_with_background() -> None:
    small = load_dataset("mnist", image_size=28, channels=1)
    big = load_dataset("mnist", image_size=32, channels=1)
    # Same seed, same split: the 32 px images are the 28 px ones inside a 2 px background frame.
    assert torch.equal(big.train[:, :, 2:30, 2:30], small.train)
    frame = big.train.clone()
    frame[:, :, 2:30, 2:30] = -1.0
    assert bool((frame == -1.0).all())


def test_mnist_other_sizes_resize_and_rgb() -> None:
    data = load_dataset("mnist", image_size=16, channels=3)
    assert data.train.shape == (4000, 3, 16, 16)
    _check_range(data)
    assert torch.equal(data.train[:, 0], data.train[:, 2])  # grey -> RGB repeats the channel


def test_mnist_decoding_is_cached() -> None:
    load_dataset("mnist", image_size=28, channels=1)
    hits = _mnist_arrays.cache_info().hits
    load_dataset("mnist", image_size=28, channels=1)
    assert _mnist_arrays.cache_info().hits == hits + 1


def test_digits() -> None:
    data = load_dataset("digits", image_size=16, channels=1)
    assert len(data.train) + len(data.held_out) == 1797
    assert data.train.shape[1:] == (1, 16, 16) and data.num_classes == 10
    _check_range(data)
    assert set(data.held_out_labels.tolist()) == set(range(10))


def _write_folder(root, *, classes: tuple[str, ...] | None) -> None:
    rng = np.random.default_rng(0)
    dirs = [root / c for c in classes] if classes else [root]
    for k, folder in enumerate(dirs):
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(6):
            pixels = rng.integers(0, 256, size=(20 + i, 24, 3), dtype=np.uint8)  # sizes differ
            pixels[..., 0] = 255 if k == 0 else 0  # classes differ in their red channel
            ext = "jpg" if i == 5 else "png"
            Image.fromarray(pixels).save(folder / f"img{i}.{ext}")


def test_image_folder_with_class_subfolders(tmp_path) -> None:
    _write_folder(tmp_path, classes=("cat", "dog"))
    data = load_dataset(str(tmp_path), image_size=16, channels=3, seed=3, held_out=1 / 3)
    assert data.num_classes == 2
    assert data.train.shape == (8, 3, 16, 16) and data.held_out.shape == (4, 3, 16, 16)
    _check_range(data)
    assert sorted(data.held_out_labels.tolist()) == [0, 0, 1, 1]  # stratified
    # "cat" (label 0) has a saturated red channel (less so after JPEG compression).
    red = torch.cat([data.train, data.held_out])[:, 0].mean(dim=(1, 2))
    labels = torch.cat([data.train_labels, data.held_out_labels])
    assert bool((red[labels == 0] > 0.7).all()) and bool((red[labels == 1] < -0.7).all())
    grey = load_dataset(str(tmp_path), image_size=8, channels=1, seed=3, held_out=1 / 3)
    assert grey.train.shape == (8, 1, 8, 8)
    assert "folder" in grey.key and grey.key != data.key


def test_image_folder_without_labels(tmp_path) -> None:
    _write_folder(tmp_path, classes=None)
    data = load_dataset(str(tmp_path), image_size=12, channels=1)
    assert data.train_labels is None and data.held_out_labels is None and data.num_classes is None
    assert len(data.train) + len(data.held_out) == 6 and data.train.shape[1:] == (1, 12, 12)


def test_npz_uint8_with_labels_and_float_rgb(tmp_path) -> None:
    rng = np.random.default_rng(0)
    path = tmp_path / "grey.npz"
    np.savez(path, images=rng.integers(0, 256, (40, 10, 10), dtype=np.uint8), labels=np.arange(40) % 4)
    data = load_dataset(str(path), image_size=10, channels=1)
    assert data.num_classes == 4 and data.train.shape == (32, 1, 10, 10)
    _check_range(data)

    red = np.zeros((10, 6, 6, 3), np.float32)
    red[..., 0] = 1.0  # pure red, floats in [0, 1]
    np.savez(tmp_path / "red.npz", images=red)
    rgb = load_dataset(str(tmp_path / "red.npz"), image_size=6, channels=3)
    assert rgb.train_labels is None
    assert torch.allclose(rgb.train[:, 0], torch.ones(1)) and torch.allclose(rgb.train[:, 1], -torch.ones(1))
    grey = load_dataset(str(tmp_path / "red.npz"), image_size=6, channels=1)
    assert torch.allclose(grey.train, torch.full_like(grey.train, 2 * 0.299 - 1))  # luminance


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("mnsit", "unknown dataset 'mnsit' (did you mean 'mnist'?); valid: digits, mnist"),
        ("/no/such/folder", "'/no/such/folder' does not exist; expected an image folder or an .npz file"),
        ("missing.npz", "'missing.npz' does not exist"),
    ],
)
def test_unknown_or_missing_dataset(name: str, message: str) -> None:
    with pytest.raises(
        ConfigError, match=message.replace("(", r"\(").replace(")", r"\)").replace("?", r"\?")
    ):
        load_dataset(name, image_size=16, channels=1)


def test_bad_npz_files(tmp_path) -> None:
    np.savez(tmp_path / "nokey.npz", pixels=np.zeros((4, 8, 8)))
    with pytest.raises(ConfigError, match=r"no 'images' array \(found \['pixels'\]\)"):
        load_dataset(str(tmp_path / "nokey.npz"), image_size=8, channels=1)
    (tmp_path / "corrupt.npz").write_bytes(b"not a zip file")
    with pytest.raises(ConfigError, match="cannot read .*corrupt.npz.* as .npz"):
        load_dataset(str(tmp_path / "corrupt.npz"), image_size=8, channels=1)
    np.savez(tmp_path / "labels.npz", images=np.zeros((4, 8, 8), np.uint8), labels=np.zeros(3, np.int64))
    with pytest.raises(ConfigError, match=r"'labels' has shape \(3,\).*expected \(4,\)"):
        load_dataset(str(tmp_path / "labels.npz"), image_size=8, channels=1)
    np.savez(tmp_path / "range.npz", images=np.full((4, 8, 8), 300.0))
    with pytest.raises(ConfigError, match=r"range \[300, 300\]"):
        load_dataset(str(tmp_path / "range.npz"), image_size=8, channels=1)


def test_bad_folders_and_files(tmp_path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="holds no images"):
        load_dataset(str(tmp_path / "empty"), image_size=8, channels=1)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "a.png").write_bytes(b"garbage")
    (broken / "b.png").write_bytes(b"garbage")
    with pytest.raises(ConfigError, match=r"cannot read image .*a\.png"):
        load_dataset(str(broken), image_size=8, channels=1)
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(ConfigError, match="is a file but not .npz"):
        load_dataset(str(tmp_path / "notes.txt"), image_size=8, channels=1)


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"image_size": 2, "channels": 1}, "data.image_size"),
        ({"image_size": 16, "channels": 2}, "data.channels"),
        ({"image_size": 16, "channels": 1, "held_out": 1.0}, "data.held_out"),
    ],
)
def test_bad_arguments(kwargs: dict, key: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_dataset("mnist", **kwargs)
    assert info.value.key == key


def test_torchvision_needs_torchvision_and_local_files(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("TORCHVISION_DATA", str(tmp_path))
    try:
        import torchvision  # noqa: F401

        expected = f"not found under {tmp_path}"
    except ImportError:
        expected = "needs torchvision, which is not importable"
    with pytest.raises(ConfigError, match=expected):
        load_dataset("torchvision:cifar10", image_size=32, channels=3)
    with pytest.raises(ConfigError, match="valid torchvision datasets: torchvision:cifar10"):
        load_dataset("torchvision:svhn", image_size=32, channels=3)


@pytest.mark.parametrize("name", dataset_names())
def test_every_registered_dataset_loads_or_explains(name: str, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("TORCHVISION_DATA", str(tmp_path))  # never touch a real download folder
    try:
        data = load_dataset(name, image_size=16, channels=1)
    except ConfigError as err:
        assert name in str(err)  # e.g. torchvision sources without torchvision or files
        return
    assert data.train.shape[1:] == (1, 16, 16) and len(data.held_out) > 0
    _check_range(data)


def test_register_dataset(monkeypatch) -> None:
    from evaluators.datasets.base import RawImages

    def toy(name: str, *, image_size: int, channels: int) -> RawImages:
        images = np.linspace(0, 1, 10 * 4 * 4, dtype=np.float32).reshape(10, 4, 4, 1)
        return RawImages(images, None, None, source_id="toy")

    monkeypatch.setitem(DATASETS, "toy", toy)
    with pytest.raises(ValueError, match="already registered"):
        register_dataset("toy", toy)
    data = load_dataset("toy", image_size=8, channels=1, held_out=0.3)
    assert data.train.shape == (7, 1, 8, 8) and data.key.startswith("toy-8px")


def test_decoded_mnist_is_cached_on_disk_and_a_corrupt_cache_is_rebuilt(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from evaluators.datasets import builtin

    monkeypatch.setenv("UNET_NAS_CACHE", str(tmp_path))
    builtin._mnist_arrays.cache_clear()
    try:
        images, labels = builtin._mnist_arrays()
        cached = list((tmp_path / "data").glob("mnist5k-*.npz"))
        assert len(cached) == 1 and images.shape == (5000, 28, 28, 1) and images.dtype == np.uint8
        decoded, decoded_labels = builtin._decode_mnist_csv(builtin.mnist_csv_path())
        assert np.array_equal(images, decoded) and np.array_equal(labels, decoded_labels)
        cached[0].write_bytes(b"not an npz file")  # a torn or foreign file is decoded again, not trusted
        builtin._mnist_arrays.cache_clear()
        again, again_labels = builtin._mnist_arrays()
        assert np.array_equal(again, decoded) and np.array_equal(again_labels, decoded_labels)
        with np.load(cached[0]) as data:
            assert np.array_equal(data["images"], decoded)  # rewritten whole
    finally:
        builtin._mnist_arrays.cache_clear()
