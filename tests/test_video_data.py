"""Video data: generated Moving MNIST (shapes, determinism, motion, split) and users' clip files."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from evaluators.video_data import VideoData, _digit_split, load_video_dataset
from nas.errors import ConfigError


def _check(data: VideoData, *, frames: int, size: int = 32, channels: int = 1) -> None:
    for x in (data.train, data.held_out):
        assert x.dtype == torch.float32 and x.shape[1:] == (channels, frames, size, size)
        assert float(x.min()) >= -1.0 and float(x.max()) <= 1.0
    assert (data.frames, data.image_size, data.channels) == (frames, size, channels)


@pytest.mark.parametrize("frames", [1, 4, 8])
def test_moving_mnist_shapes_and_range(frames: int) -> None:
    data = load_video_dataset(frames=frames, clips=100)
    _check(data, frames=frames)
    assert (len(data.train), len(data.held_out)) == (90, 10)
    assert float(data.train.min()) == -1.0  # black background
    assert data.name == "moving_mnist" and f"{frames}f" in data.key


def test_moving_mnist_default_size() -> None:
    data = load_video_dataset()
    _check(data, frames=8)
    assert (len(data.train), len(data.held_out)) == (1800, 200)


def test_moving_mnist_is_deterministic_per_seed_and_per_clip() -> None:
    a = load_video_dataset(clips=60, seed=3)
    b = load_video_dataset(clips=60, seed=3)
    assert torch.equal(a.train, b.train) and torch.equal(a.held_out, b.held_out) and a.key == b.key
    c = load_video_dataset(clips=60, seed=4)
    assert not torch.equal(a.train, c.train) and a.key != c.key
    # Clip i comes from its own generator: asking for more clips or frames keeps the earlier ones.
    more = load_video_dataset(clips=120, seed=3)
    assert torch.equal(more.train[: len(a.train)], a.train)
    assert torch.equal(more.held_out[: len(a.held_out)], a.held_out)
    longer = load_video_dataset(clips=60, seed=3, frames=12)
    assert torch.equal(longer.train[:, :, :8], a.train)


def test_moving_mnist_digits_move_and_stay_on_canvas() -> None:
    x = load_video_dataset(clips=200).train
    moved = (x[:, :, 0] != x[:, :, 3]).flatten(1).any(dim=1)
    assert float(moved.float().mean()) > 0.95
    per_frame_max = x.amax(dim=(1, 3, 4))  # (N, F): the brightest pixel of each frame
    assert bool((per_frame_max > -0.5).all())
    # Digits travel the whole canvas: ink comes within 4 px of every edge (a 16 px digit has a ~2 px margin).
    ink = x > -0.5
    assert all(bool(edge.any()) for edge in (ink[..., :4, :], ink[..., -4:, :], ink[..., :4], ink[..., -4:]))


def test_moving_mnist_rgb_and_other_sizes() -> None:
    data = load_video_dataset(clips=20, image_size=16, channels=3, frames=2)
    _check(data, frames=2, size=16, channels=3)
    assert torch.equal(data.train[:, 0], data.train[:, 2])  # grey digits in every channel


def test_held_out_clips_use_unseen_digits() -> None:
    train_idx, held_idx = _digit_split(0, 0.1)
    assert len(np.intersect1d(train_idx, held_idx)) == 0 and len(held_idx) == 500
    data = load_video_dataset(clips=100)
    flat_train = data.train.flatten(1)
    for clip in data.held_out.flatten(1):
        assert not bool((flat_train == clip).all(dim=1).any())


def _clips(dtype: type, n: int = 6, frames: int = 5, size: int = 10, channels: int | None = None) -> np.ndarray:
    rng = np.random.default_rng(0)
    shape = (n, frames, size, size) + (() if channels is None else (channels,))
    values = rng.random(shape)
    return (values * 255).astype(np.uint8) if dtype == np.uint8 else values.astype(dtype)


@pytest.mark.parametrize("dtype", [np.uint8, np.float32, np.float64])
@pytest.mark.parametrize("suffix", [".npy", ".npz"])
def test_array_files_round_trip(tmp_path: Path, dtype: type, suffix: str) -> None:
    clips = _clips(dtype)
    path = tmp_path / f"clips{suffix}"
    if suffix == ".npy":
        np.save(path, clips)
    else:
        np.savez(path, clips=clips, other=np.zeros(3))
    data = load_video_dataset(str(path), frames=4, image_size=10, held_out=0.34)
    _check(data, frames=4, size=10)
    assert (len(data.train), len(data.held_out)) == (4, 2)
    every = torch.cat([data.train, data.held_out])
    expected = torch.from_numpy(clips[:, :4].astype(np.float32) / (255.0 if dtype == np.uint8 else 1.0)) * 2 - 1
    # Each clip comes back (in the split's seeded order), cut to its first 4 frames.
    for clip in expected:
        assert any(torch.allclose(got[0], clip, atol=1e-6) for got in every)


def test_array_files_channels_resize_and_single_array_npz(tmp_path: Path) -> None:
    path = tmp_path / "rgb.npz"
    np.savez(path, _clips(np.uint8, size=20, channels=3))  # the only array, saved as arr_0
    data = load_video_dataset(str(path), frames=5, image_size=8, channels=1, clips=4)
    _check(data, frames=5, size=8)
    assert len(data.train) + len(data.held_out) == 4


def test_frame_folders(tmp_path: Path) -> None:
    Image = pytest.importorskip("PIL.Image")
    clips = _clips(np.uint8, n=3, frames=11, size=12)
    for i, clip in enumerate(clips):
        (tmp_path / f"clip{i}").mkdir()
        for t, frame in enumerate(clip):
            Image.fromarray(frame).save(tmp_path / f"clip{i}" / f"frame{t}.png")
    data = load_video_dataset(str(tmp_path), frames=10, image_size=12, held_out=0.34)
    _check(data, frames=10, size=12)
    every = torch.cat([data.train, data.held_out])[:, 0]
    expected = torch.from_numpy(clips[:, :10].astype(np.float32) / 255.0) * 2 - 1
    for clip in expected:  # frame10 sorts after frame9, not after frame1
        assert any(torch.allclose(got, clip, atol=1e-6) for got in every)
    with pytest.raises(ConfigError, match=r"clip 0 \(clip0\) has 11 frames, expected at least 12"):
        load_video_dataset(str(tmp_path), frames=12, image_size=12)


def test_frame_folder_without_pillow(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "PIL", None)  # makes `import PIL` raise ImportError
    with pytest.raises(ConfigError, match="needs Pillow"):
        load_video_dataset(str(tmp_path))


@pytest.mark.parametrize(
    ("array", "message"),
    [
        (np.zeros((4, 8, 8), np.uint8), r"expected clips of shape \(N, F, H, W\) or \(N, F, H, W, C\).*got \(4, 8, 8\)"),
        (np.zeros((4, 8, 8, 8, 5), np.uint8), r"got \(4, 8, 8, 8, 5\)"),
        (np.zeros((3, 4, 8, 8), np.uint8), "clips have 4 frames, expected at least 8"),
        (np.zeros((3, 8, 8, 8), np.int64), "expected uint8 or float clips, got int64"),
        (np.zeros((3, 8, 8, 8), bool), "expected uint8 or float clips, got bool"),
        (np.zeros((3, 8, 8, 8), np.complex64), "expected uint8 or float clips, got complex64"),
        (np.full((3, 8, 8, 8), 2.0, np.float32), r"must lie in \[0, 1\], found values in \[2, 2\]"),
        (np.full((3, 8, 8, 8), np.nan, np.float32), r"must lie in \[0, 1\]"),
        (np.zeros((0, 8, 8, 8), np.uint8), "no clips"),
        (np.zeros((1, 8, 8, 8), np.uint8), "expected at least 2"),
    ],
)
def test_bad_clip_arrays(tmp_path: Path, array: np.ndarray, message: str) -> None:
    path = tmp_path / "bad.npy"
    np.save(path, array)
    with pytest.raises(ConfigError, match=message) as err:
        load_video_dataset(str(path), frames=8)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize(
    ("name", "kwargs", "message"),
    [
        ("moving_mnst", {}, r"unknown video dataset 'moving_mnst' \(did you mean 'moving_mnist'\?\)"),
        ("missing/clips.npy", {}, "does not exist"),
        ("moving_mnist", {"frames": 0}, "frames must be an integer >= 1, got 0"),
        ("moving_mnist", {"image_size": 0}, "image_size must be an integer >= 4, got 0"),
        ("moving_mnist", {"image_size": -8}, "image_size must be an integer >= 4"),
        ("moving_mnist", {"clips": 1}, "clips must be an integer >= 2"),
        ("moving_mnist", {"channels": 2}, "channels must be 1 or 3"),
        ("moving_mnist", {"held_out": 1.0}, "held_out must be a fraction"),
    ],
)
def test_bad_arguments(name: str, kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_video_dataset(name, **kwargs)


def test_bad_files(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(ConfigError, match="neither .npy nor .npz"):
        load_video_dataset(str(tmp_path / "notes.txt"))
    np.savez(tmp_path / "two.npz", a=np.zeros(1), b=np.zeros(1))
    with pytest.raises(ConfigError, match=r"no 'clips' array \(found \['a', 'b'\]\)"):
        load_video_dataset(str(tmp_path / "two.npz"))
    (tmp_path / "broken.npy").write_bytes(b"not numpy")
    with pytest.raises(ConfigError, match="cannot read"):
        load_video_dataset(str(tmp_path / "broken.npy"))
    (tmp_path / "one_clip").mkdir()
    with pytest.raises(ConfigError, match="1 clip subfolder"):
        load_video_dataset(str(tmp_path))
