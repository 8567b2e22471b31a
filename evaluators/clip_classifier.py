"""The feature network behind the temporal score: a small spatio-temporal CNN over whole clips.

The FVD recipe (Unterthiner et al., 2018) at the scale of Moving MNIST: where FVD takes I3D
features trained on Kinetics actions, this takes the 64-d penultimate layer of a three-stage 3D
CNN trained on the embedded clips' own labels, the digit's motion (its velocity at frame 0, 36
classes) and its class (10), so the features encode how the content moves as well as what it is.
A frame-shuffled clip has the right frames but jumps where a real digit glides, and a frozen clip
does not move at all: both land away from real clips in this space, which the per-frame FID
proxy cannot see.

Layout: stage 1 is spatial only, a ``(1, 3, 3)`` convolution (one frame's strokes), stages 2 and
3 are ``(3, 3, 3)`` (motion between neighbouring frames), each followed by a spatial 2x2 max-pool,
BatchNorm and ReLU (8, 16, 32 channels); an adaptive average pool to 2 x 3 x 3 keeps a coarse
"early half / late half" of the clip, then a 64-d ReLU feature layer and the two heads.  About
57k parameters and 15 M MACs per 8-frame 32x32 clip.  Training is deterministic for a seed,
device and thread count, as :mod:`evaluators.classifier`'s is.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from evaluators.classifier import TrainConfig, fit, random_shift

__all__ = ["ClipFeatureNet", "build_clip_net", "clip_accuracy", "train_clip_classifier"]


class ClipFeatureNet(nn.Module):
    """Two-head 3D CNN whose penultimate layer provides the temporal score's clip features."""

    def __init__(self, *, in_channels: int, motion_classes: int = 36, content_classes: int = 10,
                 feature_dim: int = 64, widths: tuple[int, int, int] = (8, 16, 32)) -> None:
        super().__init__()
        stages: list[nn.Module] = []
        prev = in_channels
        for i, width in enumerate(widths):
            kernel, pad = ((1, 3, 3), (0, 1, 1)) if i == 0 else ((3, 3, 3), (1, 1, 1))
            stages += [nn.Conv3d(prev, width, kernel, padding=pad, bias=False), nn.MaxPool3d((1, 2, 2)),
                       nn.BatchNorm3d(width), nn.ReLU(inplace=True)]
            prev = width
        self.body = nn.Sequential(*stages, nn.AdaptiveAvgPool3d((2, 3, 3)), nn.Flatten())
        self.embed = nn.Sequential(nn.Linear(prev * 18, feature_dim), nn.ReLU(inplace=True))
        self.motion_head = nn.Linear(feature_dim, motion_classes)
        self.content_head = nn.Linear(feature_dim, content_classes)
        self.feature_dim = feature_dim

    def features(self, clips: torch.Tensor) -> torch.Tensor:
        """(N, C, F, H, W) clips in [-1, 1] -> (N, feature_dim)."""
        return self.embed(self.body(clips))

    def forward(self, clips: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feats = self.features(clips)
        return self.motion_head(feats), self.content_head(feats)  # logits (N, 36), (N, 10)


def build_clip_net(*, in_channels: int, seed: int) -> ClipFeatureNet:
    """A freshly initialised :class:`ClipFeatureNet`, the same for the same seed on every call."""
    with torch.random.fork_rng(devices=[]):  # leave the caller's global RNG untouched
        torch.manual_seed(seed)
        return ClipFeatureNet(in_channels=in_channels)


def _shift_clips(clips: torch.Tensor, max_shift: int, generator: torch.Generator) -> torch.Tensor:
    """One random integer shift per clip, the same for all its frames (motion is left intact)."""
    n, c, f, h, w = clips.shape
    return random_shift(clips.reshape(n, c * f, h, w), max_shift, generator).view(n, c, f, h, w)


@torch.no_grad()
def clip_accuracy(model: ClipFeatureNet, clips: torch.Tensor, motion: torch.Tensor, content: torch.Tensor,
                  *, batch_size: int = 200) -> tuple[float, float]:
    """Top-1 accuracy of ``model`` (eval mode) on the motion and the content labels of ``clips``."""
    model.eval()
    device = next(model.parameters()).device
    hits = [0, 0]
    for start in range(0, len(clips), batch_size):
        logits = model(clips[start:start + batch_size].to(device))
        for k, labels in enumerate((motion, content)):
            hits[k] += int((logits[k].argmax(1).cpu() == labels[start:start + batch_size]).sum())
    return hits[0] / max(len(clips), 1), hits[1] / max(len(clips), 1)


def train_clip_classifier(clips: torch.Tensor, motion: torch.Tensor, content: torch.Tensor, *, seed: int = 0,
                          device: torch.device | str = "cpu", config: TrainConfig | None = None) -> ClipFeatureNet:
    """Train a :class:`ClipFeatureNet` on ``clips`` (N, C, F, H, W) in [-1, 1] with their motion
    and content labels: AdamW, one-cycle schedule, a fixed number of steps, the sum of both
    cross-entropies.  Returns the model in eval mode on ``device``."""
    config = config or TrainConfig()
    device = torch.device(device)
    model = build_clip_net(in_channels=clips.shape[1], seed=seed).to(device)

    def batch_loss(idx: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        motion_logits, content_logits = model(_shift_clips(clips[idx], config.max_shift, generator).to(device))
        return (F.cross_entropy(motion_logits, motion[idx].to(device))
                + F.cross_entropy(content_logits, content[idx].to(device)))

    fit(model, len(clips), batch_loss, config=config, seed=seed)
    return model
