"""`UNetSpec`: the one description of a diffusion U-Net architecture.

A spec is a frozen dataclass (global fields plus one :class:`LevelSpec` per resolution level),
validated at construction, saved as YAML beside every result and the only input of
:func:`nas.unet.build_unet` (nanoGPT's ``GPTConfig -> GPT(config)`` pattern).

Channel plan: level ``i`` works at ``base_channels * levels[i].channel_mult`` channels; the
resampling layers between levels change the channel count, so every block, skip and attention
layer of a level sees the same width.  The bottleneck ("mid") runs at the last level's width
with the last level's convolution type.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from nas.errors import ConfigError, close_match_hint

__all__ = [
    "ATTENTION_TYPES",
    "CONV_TYPES",
    "PREDICTIONS",
    "RESAMPLES",
    "SCHEDULES",
    "SKIP_FUSIONS",
    "TIME_CONDITIONINGS",
    "VARIANCES",
    "LevelSpec",
    "UNetSpec",
]

CONV_TYPES = ("standard", "depthwise_separable", "inverted_residual")
ATTENTION_TYPES = ("none", "full", "linear", "transformer")
SKIP_FUSIONS = ("concat", "add")
TIME_CONDITIONINGS = ("additive", "scale_shift")
RESAMPLES = ("conv", "avgpool", "resblock", "pixel_shuffle")
PREDICTIONS = ("eps", "v", "x0")
VARIANCES = ("fixed", "learned")
SCHEDULES = ("linear", "cosine")

MAX_BLOCKS = 4
MAX_DECODER_BLOCKS = MAX_BLOCKS + 1  # DDPM's decoder has one block more than its encoder
MAX_LEVELS = 6

# Which string fields take which names; used by validation and by the space DSL.
NAMED_CHOICES: dict[str, tuple[str, ...]] = {
    "conv": CONV_TYPES,
    "attention": ATTENTION_TYPES,
    "mid_attention": ATTENTION_TYPES,
    "skip_fusion": SKIP_FUSIONS,
    "time_conditioning": TIME_CONDITIONINGS,
    "resample": RESAMPLES,
    "prediction": PREDICTIONS,
    "variance": VARIANCES,
    "schedule": SCHEDULES,
}


def _check_type(name: str, value: Any, expected: type) -> None:
    # bool is a subclass of int in Python; a YAML `true` must not pass as a channel count.
    ok = isinstance(value, expected) and not (expected is int and isinstance(value, bool))
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        ok = True
    if not ok:
        raise ConfigError(f"expected {expected.__name__}, got {value!r}", key=name)


def _check_choice(name: str, value: Any) -> None:
    valid = NAMED_CHOICES[name.rsplit(".", 1)[-1]]
    if value not in valid:
        hint = close_match_hint(value, valid)
        raise ConfigError(f"unknown value {value!r}{hint}; expected one of {list(valid)}", key=name)


def _check_range(name: str, value: int | float, lo: float, hi: float | None = None) -> None:
    if value < lo or (hi is not None and value > hi):
        bound = f">= {lo}" if hi is None else f"in [{lo}, {hi}]"
        raise ConfigError(f"expected a value {bound}, got {value!r}", key=name)


@dataclass(frozen=True)
class LevelSpec:
    """One resolution level of the U-Net.

    Args:
        channel_mult: width of this level as a multiple of ``UNetSpec.base_channels``.
        blocks: residual blocks in the encoder at this level (0-4).
        decoder_blocks: residual blocks in the decoder at this level (0-5); each consumes one
            skip from the same level while skips remain (DDPM uses ``blocks + 1``).
        conv: block type, one of ``standard`` (3x3 conv pair, DDPM/ADM),
            ``depthwise_separable`` or ``inverted_residual`` (MobileNetV2).
        se: squeeze-excitation on each block's residual branch (Hu et al. 2018).
        attention: layer after each block: ``none``, ``full`` (multi-head self-attention),
            ``linear`` (Katharopoulos et al. 2020) or ``transformer`` (attention + MLP, DiT-style).
    """

    channel_mult: int = 1
    blocks: int = 2
    decoder_blocks: int = 3
    conv: str = "standard"
    se: bool = False
    attention: str = "none"

    def __post_init__(self) -> None:
        _check_type("channel_mult", self.channel_mult, int)
        _check_range("channel_mult", self.channel_mult, 1, 64)
        _check_type("blocks", self.blocks, int)
        _check_range("blocks", self.blocks, 0, MAX_BLOCKS)
        _check_type("decoder_blocks", self.decoder_blocks, int)
        _check_range("decoder_blocks", self.decoder_blocks, 0, MAX_DECODER_BLOCKS)
        _check_type("conv", self.conv, str)
        _check_choice("conv", self.conv)
        _check_type("se", self.se, bool)
        _check_type("attention", self.attention, str)
        _check_choice("attention", self.attention)


LEVEL_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(LevelSpec))


@dataclass(frozen=True)
class UNetSpec:
    """A complete, resolved diffusion U-Net architecture (see the module docstring).

    Args:
        image_size: input height and width; divisible by ``2 ** (len(levels) - 1)``.
        in_channels: image channels (1 for MNIST, 3 for RGB).
        base_channels: width unit; level ``i`` has ``base_channels * channel_mult`` channels.
        levels: one :class:`LevelSpec` per resolution, highest resolution first.
        mid_attention: attention type at the bottleneck, between its two blocks.
        head_channels: channels per attention head (ADM found a fixed width per head best);
            a layer narrower than this has one head.
        expansion: inverted-residual expansion ratio.
        se_reduction: squeeze-excitation reduction ratio.
        skip_fusion: how a decoder block merges its skip: ``concat`` or ``add``.
        time_conditioning: ``additive`` (DDPM) or ``scale_shift`` (AdaGN, ADM).
        resample: ``conv`` (strided conv / nearest+conv), ``avgpool``, ``resblock`` (BigGAN)
            or ``pixel_shuffle``.
        norm_groups: GroupNorm groups; divides every level's width.
        dropout: dropout inside residual blocks.
        prediction: network target: ``eps``, ``v`` or ``x0``.
        variance: ``fixed`` or ``learned`` (Improved DDPM; output channels double).
        schedule: noise schedule, ``linear`` or ``cosine``.
        diffusion_steps: number of training timesteps T.
    """

    image_size: int = 32
    in_channels: int = 1
    base_channels: int = 32
    levels: tuple[LevelSpec, ...] = field(
        default_factory=lambda: (LevelSpec(channel_mult=1), LevelSpec(channel_mult=2))
    )
    mid_attention: str = "full"
    head_channels: int = 32
    expansion: int = 4
    se_reduction: int = 4
    skip_fusion: str = "concat"
    time_conditioning: str = "scale_shift"
    resample: str = "conv"
    norm_groups: int = 8
    dropout: float = 0.0
    prediction: str = "eps"
    variance: str = "fixed"
    schedule: str = "cosine"
    diffusion_steps: int = 1000

    def __post_init__(self) -> None:
        for name in ("image_size", "in_channels", "base_channels", "head_channels", "expansion",
                     "se_reduction", "norm_groups", "diffusion_steps"):
            _check_type(name, getattr(self, name), int)
            _check_range(name, getattr(self, name), 1)
        _check_type("dropout", self.dropout, float)
        _check_range("dropout", self.dropout, 0.0, 0.99)
        for name in ("mid_attention", "skip_fusion", "time_conditioning", "resample",
                     "prediction", "variance", "schedule"):
            _check_type(name, getattr(self, name), str)
            _check_choice(name, getattr(self, name))
        if isinstance(self.levels, list):  # accept a list, store a tuple (hashable, frozen)
            object.__setattr__(self, "levels", tuple(self.levels))
        if not isinstance(self.levels, tuple) or not all(isinstance(lv, LevelSpec) for lv in self.levels):
            raise ConfigError(f"expected a list of levels, got {self.levels!r}", key="levels")
        _check_range("levels", len(self.levels), 1, MAX_LEVELS)
        self._check_combinations()

    def _check_combinations(self) -> None:
        """Cross-field rules: a spec that passes builds a working network."""
        n = len(self.levels)
        factor = 2 ** (n - 1)
        if self.image_size % factor:
            raise ConfigError(
                f"image size {self.image_size} is not divisible by 2^(levels-1) = {factor} "
                f"for {n} levels", key="image_size")
        for i, width in enumerate(self.level_channels):
            if width % self.norm_groups:
                raise ConfigError(
                    f"level {i} has {width} channels (base_channels {self.base_channels} x "
                    f"channel_mult {self.levels[i].channel_mult}), not divisible by "
                    f"norm_groups {self.norm_groups}", key=f"levels[{i}].channel_mult")
        for i, width in self._attention_widths():
            if width > self.head_channels and width % self.head_channels:
                where = "mid_attention" if i is None else f"levels[{i}].attention"
                raise ConfigError(
                    f"{width} channels are not divisible by head_channels {self.head_channels}",
                    key=where)

    def _attention_widths(self) -> list[tuple[int | None, int]]:
        out: list[tuple[int | None, int]] = [
            (i, w) for i, (lv, w) in enumerate(zip(self.levels, self.level_channels))
            if lv.attention != "none" and (lv.blocks or lv.decoder_blocks)
        ]
        if self.mid_attention != "none":
            out.append((None, self.level_channels[-1]))
        return out

    # ----- derived values ---------------------------------------------------------------
    @property
    def level_channels(self) -> tuple[int, ...]:
        """Channels at each level, highest resolution first."""
        return tuple(self.base_channels * lv.channel_mult for lv in self.levels)

    def attention_heads(self, width: int) -> int:
        """Heads of an attention layer over ``width`` channels: ``width // head_channels``, and
        one head of the whole width when the layer is narrower than ``head_channels``."""
        return max(1, width // self.head_channels)

    @property
    def out_channels(self) -> int:
        """Output channels: the target, plus the variance interpolation when it is learned."""
        return self.in_channels * (2 if self.variance == "learned" else 1)

    @property
    def uses_attention(self) -> bool:
        """Whether any level or the bottleneck has an attention layer."""
        return bool(self._attention_widths())

    # ----- serialisation ----------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Plain-data form (levels as a list of dicts), the inverse of :meth:`from_dict`."""
        data = dataclasses.asdict(self)
        data["levels"] = [dict(lv) for lv in data["levels"]]
        return data

    @classmethod
    def from_dict(cls, data: Any, *, source: str | None = None) -> UNetSpec:
        """Build and validate a spec from plain data; errors name ``source`` and the key."""
        try:
            return cls._from_dict(data)
        except ConfigError as err:
            raise err.within(source=source) from None

    @classmethod
    def _from_dict(cls, data: Any) -> UNetSpec:
        if not isinstance(data, dict):
            raise ConfigError(f"expected a mapping of spec fields, got {type(data).__name__}")
        data = dict(data)
        _reject_unknown(data, [f.name for f in fields(cls)], prefix="")
        raw_levels = data.pop("levels", None)
        if raw_levels is None:
            raise ConfigError("missing required key", key="levels")
        if not isinstance(raw_levels, list) or not raw_levels:
            raise ConfigError(f"expected a non-empty list of levels, got {raw_levels!r}", key="levels")
        levels = []
        for i, raw in enumerate(raw_levels):
            if not isinstance(raw, dict):
                raise ConfigError(f"expected a mapping, got {raw!r}", key=f"levels[{i}]")
            _reject_unknown(raw, LEVEL_FIELDS, prefix=f"levels[{i}].")
            try:
                levels.append(LevelSpec(**raw))
            except ConfigError as err:
                raise err.within(key_prefix=f"levels[{i}]") from None
        return cls(levels=tuple(levels), **data)

    def to_yaml(self) -> str:
        """YAML text; ``UNetSpec.from_yaml(spec.to_yaml()) == spec``."""
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    @classmethod
    def from_yaml(cls, text_or_path: str | Path) -> UNetSpec:
        """Load a spec from a YAML file path or YAML text.

        A file may hold the spec at its top level or under a ``spec:`` key (as
        ``nas.export`` writes it, next to metrics and provenance).
        """
        source, text = _read_text(text_or_path)
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as err:
            raise ConfigError(_yaml_error_message(err), source=source) from None
        if isinstance(data, dict) and "spec" in data and isinstance(data["spec"], dict):
            data = data["spec"]
        return cls.from_dict(data, source=source)

    def digest(self) -> str:
        """A short stable hash of the architecture, used to find repeated candidates."""
        blob = json.dumps(self.to_dict(), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


def _reject_unknown(data: dict[str, Any], valid: list[str] | tuple[str, ...], *, prefix: str) -> None:
    for key in data:
        if key not in valid:
            hint = close_match_hint(key, valid)
            raise ConfigError(f"unknown key{hint}; valid keys are {sorted(valid)}", key=f"{prefix}{key}")


def _read_text(text_or_path: str | Path) -> tuple[str, str]:
    """Return (source name, text) for a path or a YAML string."""
    if isinstance(text_or_path, Path) or (
        isinstance(text_or_path, str) and "\n" not in text_or_path
        and text_or_path.endswith((".yaml", ".yml"))
    ):
        path = Path(text_or_path)
        try:
            return str(path), path.read_text()
        except OSError as err:
            raise ConfigError(f"cannot read file: {err.strerror}", source=str(path)) from None
    return "<string>", str(text_or_path)


def _yaml_error_message(err: yaml.YAMLError) -> str:
    mark = getattr(err, "problem_mark", None)
    problem = getattr(err, "problem", None) or str(err).splitlines()[0]
    if mark is not None:
        return f"YAML syntax error at line {mark.line + 1}, column {mark.column + 1}: {problem}"
    return f"YAML syntax error: {problem}"
