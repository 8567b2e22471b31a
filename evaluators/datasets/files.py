"""User data on disk: an image folder (PNG/JPEG via Pillow) or an ``.npz`` array file.

Folder layout: either images directly in the folder (unlabelled), or one subfolder per class
(``root/<class>/**/*.png``; classes sorted by name -> labels 0..K-1), as torchvision's
``ImageFolder``.  Each image is converted to L or RGB, centre-cropped to a square and resized
with bilinear filtering (antialiased when shrinking) to the requested size.

``.npz`` layout: ``images`` of shape (N, H, W) or (N, H, W, C) (C in 1, 3, 4; (N, C, H, W) with
C in 1, 3 is also accepted), uint8 in [0, 255] or float in [0, 1] or [-1, 1]; optional
``labels`` of shape (N,) with non-negative integers.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from evaluators.datasets.base import RawImages, safe_token
from nas.errors import ConfigError

__all__ = ["IMAGE_SUFFIXES", "fingerprint", "load_image_folder", "load_npz", "read_image"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")


def fingerprint(path: Path, files: list[Path]) -> str:
    """A short content key of ``files`` under ``path`` (a folder, or the one file itself)."""
    # Path + names + sizes + mtimes: a changed file changes every cache key built on the data.
    digest = hashlib.sha1(str(path.resolve()).encode())
    for file in files:
        stat = file.stat()
        digest.update(f"{file.relative_to(path)}|{stat.st_size}|{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:10]


def _is_image(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")


def read_image(file: Path, *, image_size: int, channels: int) -> np.ndarray:
    """One image file as uint8 ``(size, size, channels)``: L or RGB, centre-cropped, bilinear-resized."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(file) as img:
            img = img.convert("L" if channels == 1 else "RGB")  # luminance for grey (ITU-R 601)
            side = min(img.size)
            left, top = (img.width - side) // 2, (img.height - side) // 2
            img = img.crop((left, top, left + side, top + side))
            img = img.resize((image_size, image_size), Image.Resampling.BILINEAR)
            array = np.asarray(img, dtype=np.uint8)
    except (OSError, UnidentifiedImageError) as err:
        raise ConfigError(f"cannot read image {file}: {err}; expected a PNG or JPEG file") from None
    return array.reshape(image_size, image_size, channels)


def load_image_folder(name: str, *, image_size: int, channels: int) -> RawImages:
    """Images under the folder ``name``; class subfolders give labels."""
    root = Path(name).expanduser()
    if not root.is_dir():
        raise ConfigError(f"dataset path {name!r} is not a folder; expected a folder of images")
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    class_files = [sorted(f for f in d.rglob("*") if _is_image(f)) for d in class_dirs]
    top_files = sorted(f for f in root.iterdir() if _is_image(f))
    labelled = [(d, fs) for d, fs in zip(class_dirs, class_files, strict=True) if fs]
    if labelled and top_files:
        raise ConfigError(
            f"image folder {name!r} mixes images at its top level with class subfolders; "
            "expected one or the other"
        )
    if labelled:
        files = [f for _, fs in labelled for f in fs]
        labels = np.concatenate([np.full(len(fs), k, np.int64) for k, (_, fs) in enumerate(labelled)])
        num_classes: int | None = len(labelled)
    else:
        files, labels, num_classes = top_files, None, None
    if not files:
        raise ConfigError(
            f"image folder {name!r} holds no images; expected files ending in {', '.join(IMAGE_SUFFIXES)}"
        )
    images = np.stack([read_image(f, image_size=image_size, channels=channels) for f in files])
    source_id = f"folder-{safe_token(root.resolve().name)}-{fingerprint(root, files)}"
    return RawImages(images, labels, num_classes, source_id=source_id)


def _npz_images(array: np.ndarray, name: str) -> np.ndarray:
    if array.ndim == 3:
        array = array[..., None]
    if array.ndim == 4 and array.shape[-1] not in (1, 3, 4) and array.shape[1] in (1, 3):
        array = np.moveaxis(array, 1, -1)  # (N, C, H, W) -> (N, H, W, C)
    if array.ndim != 4 or array.shape[-1] not in (1, 3, 4) or len(array) == 0:
        raise ConfigError(
            f"{name}: 'images' has shape {array.shape}; expected (N, H, W) or (N, H, W, C) with C in 1, 3, 4"
        )
    if array.dtype == np.uint8:
        return array
    if not np.issubdtype(array.dtype, np.number):
        raise ConfigError(f"{name}: 'images' has dtype {array.dtype}; expected uint8 or float")
    array = array.astype(np.float32)
    lo, hi = float(np.nanmin(array)), float(np.nanmax(array))
    if not np.isfinite(array).all():
        raise ConfigError(f"{name}: 'images' contains NaN or inf")
    if lo >= 0.0 and hi <= 1.0:
        return array
    if lo >= -1.0 and hi <= 1.0:
        return (array + 1.0) / 2.0  # already in the model's [-1, 1] range
    if lo >= 0.0 and hi <= 255.0:
        return array / 255.0
    raise ConfigError(f"{name}: 'images' range [{lo:g}, {hi:g}]; expected [0, 1], [-1, 1] or [0, 255]")


def load_npz(name: str, *, image_size: int, channels: int) -> RawImages:
    """Arrays ``images`` (and optional ``labels``) from the ``.npz`` file ``name``."""
    path = Path(name).expanduser()
    if not path.is_file():
        raise ConfigError(f"dataset path {name!r} does not exist; expected an .npz file with key 'images'")
    try:
        with np.load(path, allow_pickle=False) as npz:
            keys = list(npz.files)
            if "images" not in keys:
                raise ConfigError(
                    f"{name}: no 'images' array (found {keys}); expected keys 'images' [, 'labels']"
                )
            images = _npz_images(npz["images"], name)
            labels = npz["labels"] if "labels" in keys else None
    except ConfigError:
        raise
    except (OSError, ValueError, EOFError) as err:
        raise ConfigError(f"cannot read {name!r} as .npz ({err}); expected a numpy .npz file") from None
    num_classes = None
    if labels is not None:
        if labels.shape != (len(images),) or not np.issubdtype(labels.dtype, np.integer) or labels.min() < 0:
            raise ConfigError(
                f"{name}: 'labels' has shape {labels.shape} and dtype {labels.dtype}; "
                f"expected ({len(images)},) non-negative integers"
            )
        labels = labels.astype(np.int64)
        num_classes = int(labels.max()) + 1
    stat = path.stat()
    digest = hashlib.sha1(f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:10]
    return RawImages(images, labels, num_classes, source_id=f"npz-{safe_token(path.stem)}-{digest}")
