"""The feature network behind the FID proxy: a small LeNet-style CNN (LeCun et al., 1998).

Three stages of 3x3 conv -> 2x2 max-pool -> BatchNorm -> ReLU (16, 32, 64 channels), an adaptive
average pool to 3x3 (so one network serves any image size >= 8), a 128-d ReLU feature layer and
the class logits: ~99k parameters for 10 classes.  The 128-d layer plays the role of
Inception-v3's pool3 in FID (Heusel et al., 2017): a feature space trained on the dataset's own
labels, which is what makes Fréchet distances meaningful for 28x28 digits.

Training is deterministic for a given seed, device and thread count: a forked, seeded global
RNG for the initialisation, a seeded generator for data order and augmentation (random integer
shifts of up to 2 px, edge-replicated), deterministic algorithms where torch has them, and a
fixed number of steps (no early stopping).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["FeatureNet", "TrainConfig", "accuracy", "build_feature_net", "deterministic", "fit", "random_shift",
           "train_classifier"]


class FeatureNet(nn.Module):
    """LeNet-like classifier whose penultimate layer provides FID features."""

    def __init__(
        self,
        *,
        in_channels: int,
        num_classes: int,
        feature_dim: int = 128,
        widths: tuple[int, ...] = (16, 32, 64),
    ) -> None:
        super().__init__()
        stages: list[nn.Module] = []
        prev = in_channels
        for width in widths:
            # Pooling before BatchNorm/ReLU (max-pool commutes with the ReLU) does the
            # normalisation on a quarter of the activations: ~40% less CPU time, same accuracy.
            stages += [
                nn.Conv2d(prev, width, 3, padding=1, bias=False),
                nn.MaxPool2d(2),
                nn.BatchNorm2d(width),
                nn.ReLU(inplace=True),
            ]
            prev = width
        self.body = nn.Sequential(*stages, nn.AdaptiveAvgPool2d(3), nn.Flatten())
        self.embed = nn.Sequential(nn.Linear(prev * 9, feature_dim), nn.ReLU(inplace=True))
        self.head = nn.Linear(feature_dim, num_classes)
        self.feature_dim = feature_dim

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) in [-1, 1] -> (N, feature_dim)."""
        return self.embed(self.body(x))  # body: (N, 64 * 3 * 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))  # (N, num_classes)


def build_feature_net(*, in_channels: int, num_classes: int, seed: int) -> FeatureNet:
    """A freshly initialised :class:`FeatureNet`, the same for the same seed on every call."""
    with torch.random.fork_rng(devices=[]):  # leave the caller's global RNG untouched
        torch.manual_seed(seed)
        return FeatureNet(in_channels=in_channels, num_classes=num_classes)


class TrainConfig:
    """Training recipe; part of the on-disk cache key, so changing it retrains."""

    def __init__(
        self,
        *,
        epochs: int = 8,
        batch_size: int = 128,
        lr: float = 4e-3,
        weight_decay: float = 1e-4,
        max_shift: int = 2,
        max_steps: int = 4000,
    ) -> None:
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.max_shift = max_shift
        self.max_steps = max_steps

    def as_dict(self) -> dict[str, float | int]:
        return dict(vars(self))


@contextlib.contextmanager
def deterministic() -> Iterator[None]:
    """Deterministic algorithms and no cuDNN autotuning inside the block (for reproducible training)."""
    # Restores the caller's settings; warn_only because a few CUDA kernels have no
    # deterministic version (and CUDA also needs CUBLAS_WORKSPACE_CONFIG, which we do not set).
    was_on = torch.are_deterministic_algorithms_enabled()
    was_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    benchmark = torch.backends.cudnn.benchmark
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = False
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(was_on, warn_only=was_warn)
        torch.backends.cudnn.benchmark = benchmark


def random_shift(x: torch.Tensor, max_shift: int, generator: torch.Generator) -> torch.Tensor:
    """Shift each image by its own integer offset in [-max_shift, max_shift], edge-replicated."""
    if max_shift <= 0:
        return x
    n, _, h, w = x.shape
    padded = F.pad(x, (max_shift,) * 4, mode="replicate")  # (N, C, H + 2s, W + 2s)
    offsets = torch.randint(0, 2 * max_shift + 1, (2, n), generator=generator).to(x.device)
    rows = offsets[0, :, None] + torch.arange(h, device=x.device)  # (N, H)
    cols = offsets[1, :, None] + torch.arange(w, device=x.device)  # (N, W)
    batch = torch.arange(n, device=x.device)[:, None, None]
    out = padded.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]]  # (N, H, W, C)
    return out.permute(0, 3, 1, 2).contiguous()


@torch.no_grad()
def accuracy(
    model: FeatureNet, images: torch.Tensor, labels: torch.Tensor, *, batch_size: int = 500
) -> float:
    """Top-1 accuracy of ``model`` (eval mode) on ``images``."""
    model.eval()
    device = next(model.parameters()).device
    correct = 0
    for start in range(0, len(images), batch_size):
        logits = model(images[start : start + batch_size].to(device))
        correct += int((logits.argmax(1).cpu() == labels[start : start + batch_size]).sum())
    return correct / max(len(images), 1)


def train_classifier(
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    num_classes: int,
    seed: int = 0,
    device: torch.device | str = "cpu",
    config: TrainConfig | None = None,
) -> FeatureNet:
    """Train a :class:`FeatureNet` on ``images`` (N, C, H, W) in [-1, 1] with ``labels`` (N,).

    AdamW with a one-cycle learning-rate schedule for a fixed number of steps; returns the model
    in eval mode on ``device``.
    """
    config = config or TrainConfig()
    device = torch.device(device)
    model = build_feature_net(in_channels=images.shape[1], num_classes=num_classes, seed=seed).to(device)

    def batch_loss(idx: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        x = random_shift(images[idx], config.max_shift, generator).to(device)
        return F.cross_entropy(model(x), labels[idx].to(device))

    fit(model, len(images), batch_loss, config=config, seed=seed)
    return model


def fit(model: nn.Module, n: int, batch_loss: Callable[[torch.Tensor, torch.Generator], torch.Tensor], *,
        config: TrainConfig, seed: int) -> nn.Module:
    """The feature networks' training loop: AdamW with a one-cycle schedule for
    ``min(epochs * ceil(n / batch_size), max_steps)`` steps over seeded, reshuffled-per-epoch
    batches of indices into ``n`` examples; ``batch_loss(indices, generator)`` returns a batch's
    loss (the generator also drives its augmentation).  Deterministic algorithms throughout;
    returns ``model`` in eval mode."""
    total = max(1, min(config.epochs * math.ceil(n / config.batch_size), config.max_steps))
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config.lr, total_steps=total)
    generator = torch.Generator().manual_seed(seed)  # data order and augmentation, on CPU
    step = 0
    with deterministic():
        model.train()
        while step < total:
            order = torch.randperm(n, generator=generator)
            for start in range(0, n, config.batch_size):
                if step >= total:
                    break
                loss = batch_loss(order[start : start + config.batch_size], generator)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                schedule.step()
                step += 1
    return model.eval()
