"""Optional Inception-v3 pool features (Szegedy et al., 2016) for a classic FID.

Raw Inception FID is meaningless on 28x28 digits and its weights cannot be downloaded on the
search machines, so it is opt-in: torchvision must be importable and
``$UNET_NAS_INCEPTION_WEIGHTS`` (or an explicit path) must name a torchvision-format
``inception_v3`` state dict, e.g. the ``IMAGENET1K_V1`` file (``inception_v3_google-*.pth``).
Images in [-1, 1] are resized to 299x299 and fed as they are: those TF-ported weights expect
[-1, 1] inputs (torchvision's ``transform_input`` exists to map ImageNet-normalised inputs there).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from nas.errors import ConfigError

__all__ = ["INCEPTION_WEIGHTS_ENV", "InceptionFeatures", "inception_weights_path"]

INCEPTION_WEIGHTS_ENV = "UNET_NAS_INCEPTION_WEIGHTS"


def inception_weights_path(path: str | os.PathLike[str] | None = None) -> Path:
    """The weights file to use, checked to exist; ConfigError when torchvision or it is missing."""
    try:
        import torchvision  # noqa: F401
    except ImportError:
        raise ConfigError("feature_kind 'inception' needs torchvision, which is not importable") from None
    raw = path or os.environ.get(INCEPTION_WEIGHTS_ENV)
    if not raw:
        raise ConfigError(
            f"feature_kind 'inception' needs a weights file: set {INCEPTION_WEIGHTS_ENV} to a "
            "torchvision inception_v3 state dict (.pth)"
        )
    weights = Path(raw).expanduser()
    if not weights.is_file():
        raise ConfigError(
            f"{INCEPTION_WEIGHTS_ENV}: {weights} does not exist; expected an inception_v3 .pth file"
        )
    return weights


class InceptionFeatures(nn.Module):
    """2048-d pool features of torchvision's Inception-v3 with weights from a local file."""

    feature_dim = 2048

    def __init__(self, weights: Path) -> None:
        super().__init__()
        from torchvision.models import inception_v3

        net = inception_v3(weights=None, aux_logits=True, init_weights=False, transform_input=False)
        try:
            state = torch.load(weights, map_location="cpu", weights_only=True)
            net.load_state_dict(state)
        except (OSError, RuntimeError, KeyError) as err:
            raise ConfigError(f"{weights}: not a torchvision inception_v3 state dict ({err})") from None
        net.fc = nn.Identity()  # the output is now the 2048-d average-pooled feature
        self.net = net.eval()

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) in [-1, 1] -> (N, 2048)."""
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)  # grey -> RGB
        x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
        return self.net(x)
