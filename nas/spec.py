"""`UNetSpec`: the one description of a diffusion U-Net architecture.

A spec is a frozen dataclass (global fields plus one :class:`LevelSpec` per resolution level),
validated at construction, saved as YAML beside every result and the only input of
:func:`nas.unet.build_unet` (nanoGPT's ``GPTConfig -> GPT(config)`` pattern).

Channel plan: level ``i`` works at ``base_channels * levels[i].channel_mult`` channels.  Where
the width changes is ``width_change``: ``resampler`` (the default) lets the resampling layers
between levels change it, so every block, skip and attention layer of a level sees the same
width; ``first_block`` keeps the width through the resamplers and changes it in the first
residual block of each level (with a 1x1 shortcut), as DDPM's and ADM's code and diffusers'
``UNet2DModel`` do, so that a level's input skip has the previous level's width.  The
bottleneck ("mid") runs at the last level's width with the last level's convolution type.

A spec with ``frames > 1`` is a video U-Net (see ``UNetSpec.frames`` and ``LevelSpec.temporal``).

The module is over 400 lines because it is the spec's one home: the field-rule table the space
loader also reads, both dataclasses with their cross-field checks and the (de)serialisation that
keeps old specs' digests; split, each part would need the others' internals.
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
    "FIELD_RULES",
    "MAX_BLOCKS",
    "MAX_DECODER_BLOCKS",
    "MAX_FRAMES",
    "MAX_LEVELS",
    "PREDICTIONS",
    "RESAMPLES",
    "SCHEDULES",
    "SKIP_FUSIONS",
    "TEMPORAL_PLACEMENTS",
    "TEMPORAL_TYPES",
    "TIME_CONDITIONINGS",
    "VARIANCES",
    "WIDTH_CHANGES",
    "FieldRule",
    "LevelSpec",
    "UNetSpec",
    "check_field",
]

CONV_TYPES = ("standard", "depthwise_separable", "inverted_residual")
ATTENTION_TYPES = ("none", "full", "linear", "transformer")
SKIP_FUSIONS = ("concat", "add")
TIME_CONDITIONINGS = ("additive", "scale_shift")
RESAMPLES = ("conv", "avgpool", "resblock", "pixel_shuffle")
PREDICTIONS = ("eps", "v", "x0")
WIDTH_CHANGES = ("resampler", "first_block")
VARIANCES = ("fixed", "learned")
SCHEDULES = ("linear", "cosine")
# Mixing across the frames of a video (nas.blocks.temporal); "none" keeps frames independent.
TEMPORAL_TYPES = ("none", "conv1d", "attention")
TEMPORAL_PLACEMENTS = ("every", "last")  # after every block of a level, or only its last

MAX_BLOCKS = 4
MAX_DECODER_BLOCKS = MAX_BLOCKS + 1  # DDPM's decoder has one block more than its encoder
MAX_LEVELS = 6
MAX_FRAMES = 64


@dataclass(frozen=True)
class FieldRule:
    """What one spec field accepts: a type, and either named choices or a numeric range.

    ``choices`` (for string fields) lists every valid name; ``low``/``high`` bound a number,
    ``high`` included unless ``high_open`` (so ``[low, high)``).
    """

    kind: type
    choices: tuple[str, ...] = ()
    low: float | None = None
    high: float | None = None
    high_open: bool = False

    def range_text(self) -> str:
        """The accepted range as the error messages write it: ``>= 1``, ``in [0, 4]``, ``in [0, 1)``."""
        if self.high is None:
            return f">= {self.low:g}"
        return f"in [{self.low:g}, {self.high:g}{')' if self.high_open else ']'}"


# Sizes and counts: positive integers, bounded far above any U-Net a search builds so that an
# absurd value (1e30 channels) is refused here with its key, before it reaches torch.
_WIDTH = FieldRule(int, low=1, high=4096)

# The one table of per-field rules, read by both dataclasses and by the space loader (which
# checks every value a decision can take against it).  ``levels`` is the number of levels.
FIELD_RULES: dict[str, FieldRule] = {
    # LevelSpec
    "channel_mult": FieldRule(int, low=1, high=64),
    "blocks": FieldRule(int, low=0, high=MAX_BLOCKS),
    "decoder_blocks": FieldRule(int, low=0, high=MAX_DECODER_BLOCKS),
    "conv": FieldRule(str, choices=CONV_TYPES),
    "se": FieldRule(bool),
    "attention": FieldRule(str, choices=ATTENTION_TYPES),
    "temporal": FieldRule(str, choices=TEMPORAL_TYPES),
    "temporal_placement": FieldRule(str, choices=TEMPORAL_PLACEMENTS),
    # UNetSpec
    "image_size": FieldRule(int, low=1, high=4096),
    "frames": FieldRule(int, low=1, high=MAX_FRAMES),
    "in_channels": FieldRule(int, low=1, high=64),
    "base_channels": _WIDTH,
    "levels": FieldRule(int, low=1, high=MAX_LEVELS),
    "mid_attention": FieldRule(str, choices=ATTENTION_TYPES),
    "head_channels": _WIDTH,
    "expansion": FieldRule(int, low=1, high=64),
    "se_reduction": FieldRule(int, low=1, high=1024),
    "skip_fusion": FieldRule(str, choices=SKIP_FUSIONS),
    "time_conditioning": FieldRule(str, choices=TIME_CONDITIONINGS),
    "resample": FieldRule(str, choices=RESAMPLES),
    "width_change": FieldRule(str, choices=WIDTH_CHANGES),
    "norm_groups": _WIDTH,
    # Dropout of 1 would zero every residual branch; any p < 1 is a working network.
    "dropout": FieldRule(float, low=0, high=1, high_open=True),
    "prediction": FieldRule(str, choices=PREDICTIONS),
    "variance": FieldRule(str, choices=VARIANCES),
    "schedule": FieldRule(str, choices=SCHEDULES),
    "diffusion_steps": FieldRule(int, low=1, high=100_000),
}

_TYPE_NAMES = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}


def _has_type(value: Any, kind: type) -> bool:
    # bool is a subclass of int in Python; a YAML `true` must not pass as a channel count.
    if isinstance(value, bool):
        return kind is bool
    if kind is float:
        return isinstance(value, (int, float))
    return isinstance(value, kind)


def check_field(name: str, value: Any) -> None:
    """Check ``value`` against the rule of spec field ``name`` (see :data:`FIELD_RULES`).

    ``levels`` takes the number of levels.  Raises :class:`ConfigError` keyed ``name`` for a
    wrong type, an unknown name (with a close-match hint and the valid names) or a value out of
    range; callers that check another key path re-key it.
    """
    rule = FIELD_RULES[name]
    if rule.choices:
        # A non-string (YAML reads `no` as false) is reported as an unknown name too.
        if not isinstance(value, str) or value not in rule.choices:
            hint = close_match_hint(str(value), rule.choices)
            raise ConfigError(f"unknown value {value!r}{hint}; expected one of {list(rule.choices)}", key=name)
        return
    if not _has_type(value, rule.kind):
        raise ConfigError(f"expected {_TYPE_NAMES[rule.kind]}, got {value!r}", key=name)
    if rule.low is None:
        return
    # Written as membership so that NaN, which compares false with everything, is refused.
    below_high = rule.high is None or (value < rule.high if rule.high_open else value <= rule.high)
    if not (value >= rule.low and below_high):
        raise ConfigError(f"expected a value {rule.range_text()}, got {value!r}", key=name)


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
        temporal: for a video spec (``frames > 1``), the layer that mixes frames after a block:
            ``none``, ``conv1d`` (kernel-3 convolution over frames at each pixel, Make-A-Video's
            pseudo-3D layer) or ``attention`` (self-attention over frames at each pixel with a
            learned relative-distance bias, Video Diffusion Models); see :mod:`nas.blocks.temporal`.
        temporal_placement: ``every`` block of the level gets the temporal layer, or only the
            ``last`` one (of the encoder's and of the decoder's blocks).
    """

    channel_mult: int = 1
    blocks: int = 2
    decoder_blocks: int = 3
    conv: str = "standard"
    se: bool = False
    attention: str = "none"
    temporal: str = "none"
    temporal_placement: str = "every"

    def __post_init__(self) -> None:
        for f in fields(self):
            check_field(f.name, getattr(self, f.name))


LEVEL_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(LevelSpec))


@dataclass(frozen=True)
class UNetSpec:
    """A complete, resolved diffusion U-Net architecture (see the module docstring).

    Args:
        image_size: input height and width; divisible by ``2 ** (len(levels) - 1)``.
        frames: frames per sample: 1 for an image U-Net (inputs ``(B, C, H, W)``), more for a
            video U-Net (inputs ``(B, C, F, H, W)``; spatial layers run per frame, the levels'
            ``temporal`` layers mix frames, resampling is spatial only).
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
        width_change: where the width changes between levels: ``resampler`` (in the
            resampling layers) or ``first_block`` (in each level's first residual block, the
            DDPM/ADM/diffusers layout; needs ``skip_fusion: concat``).
        norm_groups: GroupNorm groups; divides every level's width.
        dropout: dropout probability inside residual blocks, in [0, 1).
        prediction: network target: ``eps``, ``v`` or ``x0``.
        variance: ``fixed`` or ``learned`` (Improved DDPM; output channels double).
        schedule: noise schedule, ``linear`` or ``cosine``.
        diffusion_steps: number of training timesteps T.
    """

    image_size: int = 32
    frames: int = 1
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
    width_change: str = "resampler"
    norm_groups: int = 8
    dropout: float = 0.0
    prediction: str = "eps"
    variance: str = "fixed"
    schedule: str = "cosine"
    diffusion_steps: int = 1000

    def __post_init__(self) -> None:
        if isinstance(self.levels, list):  # accept a list, store a tuple (hashable, frozen)
            object.__setattr__(self, "levels", tuple(self.levels))
        if not isinstance(self.levels, tuple) or not all(isinstance(lv, LevelSpec) for lv in self.levels):
            raise ConfigError(f"expected a list of levels, got {self.levels!r}", key="levels")
        for f in fields(self):
            check_field(f.name, len(self.levels) if f.name == "levels" else getattr(self, f.name))
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
        for i, lv in enumerate(self.levels):
            if lv.temporal != "none" and self.frames == 1:
                raise ConfigError(f"temporal = {lv.temporal} needs a video spec (frames > 1); this one has "
                                  "frames = 1", key=f"levels[{i}].temporal")
        if self.width_change == "first_block" and self.skip_fusion != "concat":
            # A level's input skip then has the previous level's width: it cannot be added.
            raise ConfigError("width_change = first_block needs skip_fusion = concat (a level's input "
                              f"skip has the previous level's width), got {self.skip_fusion!r}",
                              key="skip_fusion")
        for i, width in self._temporal_attention_widths():
            if width > self.head_channels and width % self.head_channels:
                raise ConfigError(f"{width} channels are not divisible by head_channels {self.head_channels}",
                                  key=f"levels[{i}].temporal")
        for i, width in self._attention_widths():
            if width > self.head_channels and width % self.head_channels:
                where = "mid_attention" if i is None else f"levels[{i}].attention"
                raise ConfigError(
                    f"{width} channels are not divisible by head_channels {self.head_channels}",
                    key=where)

    def _attention_widths(self) -> list[tuple[int | None, int]]:
        out: list[tuple[int | None, int]] = [
            (i, w) for i, (lv, w) in enumerate(zip(self.levels, self.level_channels, strict=True))
            if lv.attention != "none" and (lv.blocks or lv.decoder_blocks)
        ]
        if self.mid_attention != "none":
            out.append((None, self.level_channels[-1]))
        return out

    def _temporal_attention_widths(self) -> list[tuple[int, int]]:
        return [(i, w) for i, (lv, w) in enumerate(zip(self.levels, self.level_channels, strict=True))
                if lv.temporal == "attention"]

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
    def is_video(self) -> bool:
        """Whether samples have a frame axis (``frames > 1``)."""
        return self.frames > 1

    @property
    def sample_shape(self) -> tuple[int, ...]:
        """One sample's shape: ``(C, H, W)``, or ``(C, F, H, W)`` for a video spec."""
        size = self.image_size
        if self.is_video:
            return (self.in_channels, self.frames, size, size)
        return (self.in_channels, size, size)

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
        """Plain-data form (levels as a list of dicts), the inverse of :meth:`from_dict`.

        Fields added after studies existed are left out at their default, so a spec written
        before a field was added reads back equal and keeps its digest (repeats are found across
        versions, stored specs and pins stay valid).
        """
        data = dataclasses.asdict(self)
        data["levels"] = [dict(lv) for lv in data["levels"]]
        for name, default in _LATER_FIELD_DEFAULTS.items():
            if data[name] == default:
                del data[name]
        for level in data["levels"]:
            for name, default in _LATER_LEVEL_FIELD_DEFAULTS.items():
                if level[name] == default:
                    del level[name]
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
        from nas.readers import parse_yaml, read_text

        if isinstance(text_or_path, Path) or (isinstance(text_or_path, str) and "\n" not in text_or_path
                                              and text_or_path.endswith((".yaml", ".yml"))):
            source, text = str(text_or_path), read_text(text_or_path)
        else:
            source, text = "<string>", str(text_or_path)
        data = parse_yaml(text, source=source)
        if isinstance(data, dict) and "spec" in data and isinstance(data["spec"], dict):
            data = data["spec"]
        return cls.from_dict(data, source=source)

    def digest(self) -> str:
        """A short stable hash of the architecture, used to find repeated candidates."""
        blob = json.dumps(self.to_dict(), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


# Spec fields added after the first studies, with the value every older spec has.
_LATER_FIELD_DEFAULTS = {"width_change": "resampler", "frames": 1}
_LATER_LEVEL_FIELD_DEFAULTS = {"temporal": "none", "temporal_placement": "every"}


def _reject_unknown(data: dict[str, Any], valid: list[str] | tuple[str, ...], *, prefix: str) -> None:
    for key in data:
        if key not in valid:
            hint = close_match_hint(key, valid)
            raise ConfigError(f"unknown key{hint}; valid keys are {sorted(valid)}", key=f"{prefix}{key}")
