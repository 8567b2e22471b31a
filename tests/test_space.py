"""The search-space DSL: parsing, resolution, exact cardinality, sampling and Optuna."""

from __future__ import annotations

import textwrap
from pathlib import Path

import optuna
import pytest
import yaml

from nas.errors import ConfigError
from nas.metrics import METRICS, objective_metrics
from nas.space import load_space
from nas.space.search_space import CONSTRAINT_KEYS, SearchSpace
from nas.space.summary import format_summary, summarise
from nas.spec import FIELD_RULES, LEVEL_FIELDS, LevelSpec, UNetSpec

SMALL = """
name: small
data: {dataset: mnist, image_size: 16, channels: 1}
space:
  base_channels: {choice: [8, 16]}
  levels: {choice: [1, 2, 3]}
  per_level:
    channel_mult: [1, {choice: [1, 2]}, 2]
    blocks: {int: [0, 1]}
    conv: [{choice: [standard, inverted_residual]}, {choice: [standard, inverted_residual]}, inverted_residual]
    se: {choice: [false, true], when: "conv == inverted_residual"}
    attention: [none, {choice: [none, linear]}, full]
  mid_attention: {choice: [none, full]}
  head_channels: {choice: [4, 8], when: "attention != none or mid_attention != none"}
  expansion: {choice: [2, 4], when: "conv == inverted_residual"}
  resample: {choice: [conv, avgpool]}
  norm_groups: 4
"""


def write(tmp_path: Path, text: str, name: str = "space.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> SearchSpace:
    return load_space(write(tmp_path_factory.mktemp("small"), SMALL), check_constraints=False)


@pytest.fixture(scope="module")
def small_points(small: SearchSpace) -> list[UNetSpec]:
    return list(small.enumerate())


def test_cardinality_is_exact_against_brute_force(small: SearchSpace, small_points: list[UNetSpec]) -> None:
    specs = small_points
    assert len(specs) == len(set(specs))  # the walk never produces a point twice
    assert small.cardinality() == len(specs)


def test_cardinality_of_light_matches_a_hand_count() -> None:
    light = load_space("light.yaml", check_constraints=False)
    # 2 levels: base 2, mult 2, blocks 2^2, conv 3^2, se 2^2, skip 2, time 2, resample 4, and
    # (attention level 1, mid) 9 pairs, head_channels searched in the 8 with attention.
    two = 2 * 2 * 2**2 * 3**2 * 2**2 * 2 * 2 * 4 * (8 * 2 + 1)
    # 3 levels: mults 2*2, blocks 2^3, conv 3^3, se 2^3, 27 attention triples (26 with attention).
    three = 2 * 2 * 2 * 2**3 * 3**3 * 2**3 * 2 * 2 * 4 * (26 * 2 + 1)
    assert light.cardinality() == two + three


def test_conditions_and_ties_resolve(small_points: list[UNetSpec]) -> None:
    for spec in small_points:
        for level in spec.levels:
            if level.conv != "inverted_residual":
                assert level.se is False  # inactive: the spec default
            assert level.decoder_blocks == level.blocks + 1  # default tie (DDPM)
        if not spec.uses_attention and all(lv.attention == "none" for lv in spec.levels):
            assert spec.head_channels == UNetSpec().head_channels


def test_sampling_is_seeded_and_round_trips(small: SearchSpace) -> None:
    a = small.sample(20, seed=3)
    assert a == small.sample(20, seed=3)
    assert a != small.sample(20, seed=4)
    for spec in a:
        assert UNetSpec.from_yaml(spec.to_yaml()) == spec


def test_suggest_with_optuna_uses_fixed_length_and_conditional_params(small: SearchSpace) -> None:
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen_conditional = set()
    for _ in range(30):
        trial = study.ask()
        spec = small.suggest(trial)
        # One parameter per level up to the largest `levels`, whatever this trial's depth.
        assert {"level0.blocks", "level1.blocks", "level2.blocks"} <= set(trial.params)
        assert len(spec.levels) == trial.params["levels"]
        seen_conditional.add("head_channels" in trial.params)
        study.tell(trial, 0.0)
    assert seen_conditional == {True, False}


def test_extends_overrides_keys(tmp_path: Path) -> None:
    write(tmp_path, SMALL, "base.yaml")
    child = write(tmp_path, """
        extends: base.yaml
        name: child
        space:
          base_channels: 8
          per_level:
            blocks: {choice: [1]}
        """, "child.yaml")
    space = load_space(child, check_constraints=False)
    assert space.name == "child"
    specs = space.sample(10, seed=0)
    assert {s.base_channels for s in specs} == {8}
    assert all(lv.blocks == 1 for s in specs for lv in s.levels)
    assert {s.resample for s in space.enumerate()} == {"conv", "avgpool"}  # inherited


def test_bundled_spaces_load_by_name_from_anywhere(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir("/")
    for name in ("light.yaml", "adm.yaml", "mobile", "light"):
        space = load_space(name, check_constraints=False)
        assert space.cardinality() > 1000


# ----- bad input: one line naming the file, the key path and what was expected ---------------
BAD_SPACES = {
    "yaml syntax": ("space: {base_channels: [1, 2\n", "YAML syntax error at line"),
    "unknown top key": ("spaec: {}\n", "spaec: unknown key (did you mean 'space'?)"),
    "unknown space key": ("space: {base_channel: 8}\n", "space.base_channel: unknown key (did you mean 'base_channels'?)"),
    "wrong type": ("space: {per_level: {blocks: {int: [1, x]}}}\n", "space.per_level.blocks.int: expected [low, high]"),
    "bool as int": ("space: {base_channels: true}\n", "space.base_channels: expected an integer, got True"),
    "empty choice": ("space: {resample: {choice: []}}\n", "space.resample.choice: expected a non-empty list"),
    "unknown block": ("space: {per_level: {conv: {choice: [standard, resnet]}}}\n",
                      "space.per_level.conv: unknown value 'resnet'; expected one of ['standard', 'depthwise_separable', 'inverted_residual']"),
    "norm groups": ("space: {base_channels: 12, norm_groups: 8}\n",
                    "space.norm_groups: 8 does not divide the 12 channels of level 0"),
    "heads": ("space: {base_channels: 24, head_channels: 16, norm_groups: 8, mid_attention: full, levels: 1}\n",
              "space.head_channels: 16 does not divide the 24 channels of level 0"),
    "image size": ("data: {image_size: 28}\nspace: {levels: 4}\n",
                   "space.levels: image size 28 (data.image_size) is not divisible by 2^(levels-1) = 8"),
    "unreachable constraint": ("constraints: {max_params: 10}\nspace: {}\n",
                               "constraints.max_params: no point of the space meets 10"),
    "unknown metric": ("objectives: [{metric: fid}]\nspace: {}\n", "objectives[0].metric: unknown metric 'fid'"),
    "bad condition": ("space: {head_channels: {choice: [8], when: \"attention ~ full\"}}\n",
                      "space.head_channels.when: cannot parse condition term"),
    "unknown reference": ("space: {head_channels: {choice: [8], when: \"atention != none\"}}\n",
                          "refers to unknown key 'atention' (did you mean 'attention'?)"),
    "per-level list length": ("space: {levels: 2, per_level: {blocks: [1, 2, 3]}}\n",
                              "space.per_level.blocks: expected one value or a list of 2"),
    "budget key": ("budgets: {cpu: {stepz: 3}}\nspace: {}\n", "budgets.cpu.stepz: unknown key (did you mean 'steps'?)"),
}


@pytest.mark.parametrize("case", sorted(BAD_SPACES))
def test_bad_space_gives_one_line_and_exit_2(case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from nas.space.__main__ import main

    text, expected = BAD_SPACES[case]
    path = write(tmp_path, text, "bad.yaml")
    with pytest.raises(SystemExit) as exit_info:
        main(["validate", str(path)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert err.startswith(f"error: {path}: "), err
    assert expected in err, err


def test_extends_cycle_and_missing_file(tmp_path: Path) -> None:
    write(tmp_path, "extends: b.yaml\nspace: {}\n", "a.yaml")
    write(tmp_path, "extends: a.yaml\nspace: {}\n", "b.yaml")
    with pytest.raises(ConfigError, match="'extends' forms a cycle: a.yaml -> b.yaml -> a.yaml"):
        load_space(tmp_path / "a.yaml")
    with pytest.raises(ConfigError, match="no such file, and no bundled space of that name .did you mean 'light.yaml'"):
        load_space("lihgt.yaml")


BAD_SPECS = {
    "unknown field": ("levels: [{}]\nbase_channel: 8\n", "base_channel: unknown key (did you mean 'base_channels'?)"),
    "unknown conv": ("levels: [{conv: resnet}]\n", "levels[0].conv: unknown value 'resnet'"),
    "blocks range": ("levels: [{blocks: 9}]\n", "levels[0].blocks: expected a value in [0, 4], got 9"),
    "norm groups": ("levels: [{}]\nbase_channels: 12\n", "levels[0].channel_mult: level 0 has 12 channels"),
    "image size": ("image_size: 30\nlevels: [{}, {}, {}]\n", "image_size: image size 30 is not divisible by 2^(levels-1) = 4"),
    "syntax": ("levels: [{\n", "YAML syntax error at line"),
}


@pytest.mark.parametrize("case", sorted(BAD_SPECS))
def test_bad_spec_names_file_and_key(case: str, tmp_path: Path) -> None:
    text, expected = BAD_SPECS[case]
    path = write(tmp_path, text, "spec.yaml")
    with pytest.raises(ConfigError) as err:
        UNetSpec.from_yaml(path)
    assert str(err.value).startswith(f"{path}: ")
    assert expected in str(err.value)


# ----- one rule per field: the loader and the spec agree ---------------------------------------
def test_field_rules_cover_exactly_the_spec_fields() -> None:
    assert set(FIELD_RULES) == set(UNetSpec.__dataclass_fields__) | set(LevelSpec.__dataclass_fields__)


def spec_error(key: str, value: object) -> ConfigError | None:
    """The spec's error for ``key: value`` (None when the spec accepts it)."""
    try:
        if key == "levels":
            UNetSpec(levels=[LevelSpec()] * value)  # type: ignore[operator]
        elif key in LEVEL_FIELDS:
            LevelSpec(**{key: value})
        else:
            UNetSpec(**{key: value})
    except ConfigError as err:
        return err
    return None


def space_error(tmp_path: Path, key: str, value: object) -> tuple[ConfigError | None, SearchSpace | None]:
    """The loader's error for a space fixing ``key`` to ``value`` (or the loaded space)."""
    decisions = {"per_level": {key: value}} if key in LEVEL_FIELDS else {key: value}
    path = write(tmp_path, yaml.safe_dump({"space": decisions}))
    try:
        return None, load_space(path, check_constraints=False)
    except ConfigError as err:
        return err, None


@pytest.mark.parametrize(("key", "value"), [
    ("dropout", 1.0), ("dropout", -0.1), ("dropout", float("nan")), ("dropout", True), ("blocks", 5),
    ("decoder_blocks", 6), ("channel_mult", 65), ("channel_mult", True), ("levels", 7), ("levels", 0),
    ("conv", "resnet"), ("se", "yes"), ("expansion", 0), ("mid_attention", "flash"), ("diffusion_steps", 2.5),
])
def test_a_value_the_spec_refuses_is_refused_at_load_time(tmp_path: Path, key: str, value: object) -> None:
    from_spec = spec_error(key, value)
    from_space, _ = space_error(tmp_path, key, value)
    assert from_spec is not None and from_space is not None
    assert from_space.message == from_spec.message  # one rule, one message
    assert from_spec.key == key
    assert from_space.key == (f"space.per_level.{key}" if key in LEVEL_FIELDS else f"space.{key}")


@pytest.mark.parametrize("value", [0.0, 0.5, 0.995])
def test_dropout_below_one_is_accepted_by_both(tmp_path: Path, value: float) -> None:
    assert spec_error("dropout", value) is None
    err, space = space_error(tmp_path, "dropout", value)
    assert err is None and space is not None
    assert {spec.dropout for spec in space.sample(3, seed=0)} == {value}


# ----- metrics: the registry is the one list --------------------------------------------------
def test_every_constraint_metric_is_an_objective_metric_of_the_registry() -> None:
    objectives = objective_metrics()
    for key, (metric, kind) in CONSTRAINT_KEYS.items():
        assert metric in METRICS and METRICS[metric].objective, key
        # An upper limit on a figure one minimises, a lower limit on one one maximises.
        assert objectives[metric] == {"max": "minimize", "min": "maximize"}[kind], key


def test_objectives_take_the_registry_names_and_directions(tmp_path: Path) -> None:
    # Every metric but the latent-only ones (tests/test_latent.py) in a video space.
    names = [m for m in objective_metrics() if not METRICS[m].latent_only]
    path = write(tmp_path, yaml.safe_dump({"data": {"frames": 4}, "objectives": [{"metric": m} for m in names],
                                           "space": {}}))
    space = load_space(path, check_constraints=False)
    assert {o.metric: o.direction for o in space.objectives} == {m: objective_metrics()[m] for m in names}
    default = load_space(write(tmp_path, "space: {}\n", "default.yaml"), check_constraints=False)
    assert [(o.metric, o.direction) for o in default.objectives] == [
        ("val_loss", "minimize"), ("fid_proxy", "minimize"), ("throughput", "maximize")]


def test_a_clip_only_objective_is_refused_for_an_image_space(tmp_path: Path) -> None:
    path = write(tmp_path, yaml.safe_dump({"objectives": [{"metric": "val_loss"}, {"metric": "fvd_proxy"}],
                                           "space": {}}))
    with pytest.raises(ConfigError, match=r"'fvd_proxy' is measured for clips only; a video space sets "
                                          r"data.frames > 1") as err:
        load_space(path, check_constraints=False)
    assert err.value.key == "objectives[1].metric"


# ----- the report behind `python -m nas.space validate` --------------------------------------
def test_summary_counts_and_formats_without_printing(small: SearchSpace,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    summary = summarise(small, n=5, seed=0)
    assert summary.cardinality == small.cardinality()
    assert len(summary.params) == 5 and list(summary.params) == sorted(summary.params)
    assert summary.within_max_params == 5  # no max_params constraint
    assert [name for name, _ in summary.decisions] == [name for name, _ in small.param_names()]
    assert dict(summary.fixed)["norm_groups"] == "4"
    text = format_summary(summary)
    assert capsys.readouterr().out == ""
    assert text.startswith(f"space: small  ({small.source})\n") and text.endswith("within max_params)\n")
    assert f"cardinality: {small.cardinality()} distinct architectures" in text
