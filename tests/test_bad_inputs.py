"""The bad-input corpus (``tests/bad_inputs/cases.yaml``): every case exits 2 with one stderr line.

Each case runs one command in-process (the same ``main`` a shell runs) and must exit 2 with
exactly one line on stderr that starts with ``error:``, contains the case's expected text (which
names the file or flag and the key), shows no traceback, and leaves the study it was pointed at
byte for byte unchanged; a case with a ``secret`` (a password in a storage URL) must not print it.
"""

from __future__ import annotations

import hashlib
import importlib
import shutil
from pathlib import Path

import pytest
import yaml

from nas.__main__ import COMMANDS
from nas.search.__main__ import main as search_main

CORPUS = Path(__file__).parent / "bad_inputs"
TINY = Path(__file__).parent / "data" / "tiny.yaml"
CASES = yaml.safe_load((CORPUS / "cases.yaml").read_text())


@pytest.fixture(scope="module")
def finished_study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished smoke search of the tiny space: its results folder, with the space file beside it."""
    out = tmp_path_factory.mktemp("study")
    assert search_main(["--space", str(TINY), "--budget", "tiny", "--trials", "4", "--out", str(out), "--device",
                        "cpu", "--sampler", "random"]) == 0
    shutil.copy(TINY, out / "tiny.yaml")
    return out


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_the_corpus_is_large_and_covers_every_command() -> None:
    files = [p for p in CORPUS.rglob("*") if p.is_file() and p.name != "cases.yaml"]
    assert len(files) >= 60
    assert {case["command"][0] for case in CASES} == set(COMMANDS)
    assert len({case["id"] for case in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_bad_input_is_one_line_and_exit_2(case: dict, tmp_path: Path, finished_study: Path,
                                          capsys: pytest.CaptureFixture[str], request: pytest.FixtureRequest) -> None:
    study = tmp_path / "study"
    shutil.copytree(finished_study, study)
    copy = tmp_path / "copy"
    shutil.copytree(CORPUS, copy)
    places = {"{dir}": str(CORPUS), "{tmp}": str(tmp_path / "tmp"), "{copy}": str(copy), "{study}": str(study)}
    if "{pg_" in repr(case):  # a case against the session's PostgreSQL server (tests/postgres_server.py)
        from postgres_server import PASSWORD

        server = request.getfixturevalue("postgres_server")
        places.update({"{pg_host}": f"{server.host}:{server.port}", "{pg_password}": PASSWORD})

    def fill(text: str) -> str:
        for key, value in places.items():
            text = text.replace(key, value)
        return text

    tool, *argv = [fill(part) for part in case["command"]]
    before = _digest(study / "tiny.db")
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        importlib.import_module(COMMANDS[tool]).main(argv)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    assert fill(case["error"]) in lines[0]
    if "secret" in case:
        assert fill(case["secret"]) not in err, "a password was printed"
    assert _digest(study / "tiny.db") == before, "bad input changed the study"
