"""No candidate can take a search down, a tie that cannot work is refused at load, and a bug in a
command is one line with the traceback in a file (exit 1), never a stack on the terminal."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

import nas.unet
from nas.cli import run_cli
from nas.errors import ConfigError
from nas.search.__main__ import main as search_main
from nas.space import load_space
from nas.space.search_space import SearchSpace
from nas.study import finished_trials

TINY = Path(__file__).parent / "data" / "tiny.yaml"


def test_a_tie_between_keys_of_different_kinds_is_refused_when_the_space_loads(tmp_path: Path) -> None:
    space = tmp_path / "tie.yaml"
    space.write_text(f"extends: {TINY}\nspace: {{mid_attention: {{tie: skip_fusion}}}}\n")
    with pytest.raises(ConfigError, match=r"space.mid_attention: ties to 'skip_fusion', which can be 'concat': "
                                          r"unknown value 'concat'"):
        load_space(space)
    numbers = tmp_path / "offset.yaml"
    numbers.write_text(f"extends: {TINY}\nspace: {{per_level: {{conv: {{tie: blocks, offset: 1}}}}}}\n")
    with pytest.raises(ConfigError, match=r"space.per_level.conv: ties to 'blocks', which can be 1"):
        load_space(numbers)


def _search(out: Path, trials: int) -> int:
    return search_main(["--space", str(TINY), "--budget", "tiny", "--trials", str(trials), "--out", str(out),
                        "--device", "cpu", "--sampler", "random", "--seed", "3", "--no-prune"])


def test_a_candidate_that_raises_in_the_builder_is_recorded_and_the_search_goes_on(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = nas.unet.build_unet

    def fragile(spec: object) -> object:
        if spec.base_channels == 16:  # type: ignore[attr-defined]
            raise RuntimeError("boom in the builder\nC++ stack that must not reach the record")
        return real(spec)  # type: ignore[arg-type]

    monkeypatch.setattr(nas.unet, "build_unet", fragile)
    assert _search(tmp_path, 6) == 0
    study = optuna.load_study(study_name="tiny", storage=f"sqlite:///{tmp_path}/tiny.db")
    assert len(finished_trials(study)) == 6 and len(study.trials) == 6
    failed = [t for t in study.trials if t.state == TrialState.FAIL]
    assert failed, "seed 3 draws base_channels 16 at least once"
    for t in failed:
        assert t.user_attrs["status"] == "invalid"
        assert t.user_attrs["reason"] == "RuntimeError: boom in the builder"
    assert any(t.state == TrialState.COMPLETE for t in study.trials)


def test_a_point_the_space_cannot_resolve_is_recorded_and_the_search_goes_on(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = SearchSpace.suggest
    calls = {"n": 0}

    def flaky(self: SearchSpace, trial: optuna.Trial) -> object:
        calls["n"] += 1
        if calls["n"] == 2:
            raise TypeError("a resolution bug")
        return real(self, trial)

    monkeypatch.setattr(SearchSpace, "suggest", flaky)
    assert _search(tmp_path, 3) == 0
    study = optuna.load_study(study_name="tiny", storage=f"sqlite:///{tmp_path}/tiny.db")
    assert len(finished_trials(study)) == 3
    broken = study.trials[1]
    assert broken.state == TrialState.FAIL and broken.user_attrs["reason"] == "TypeError: a resolution bug"


def test_an_internal_error_is_one_line_exit_1_and_the_traceback_is_in_a_file(
        capsys: pytest.CaptureFixture[str]) -> None:
    @run_cli
    def main(argv: list[str] | None = None) -> int:
        raise KeyError("a bug")

    with pytest.raises(SystemExit) as err:
        main([])
    assert err.value.code == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: internal error, KeyError: 'a bug'")
    path = Path(lines[0].split("the traceback is in ")[1].split(";")[0])
    assert "Traceback (most recent call last)" in path.read_text() and "a bug" in path.read_text()
    path.unlink()
