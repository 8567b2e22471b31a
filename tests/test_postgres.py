"""The cluster path on a real PostgreSQL server (``tests/postgres_server.py``, one per session,
a fresh database per test): the guarantees the SQLite tests check, against ``--storage
postgresql+psycopg://...``, and the connection errors a user meets first.

Skipped with one line where no PostgreSQL server can be started; ``.ci/run`` installs one and
sets ``UNET_NAS_REQUIRE_POSTGRES=1`` so that there they fail instead.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from test_search import TINY, check_dashboard_serves, check_sigkill_mid_trial_and_resume, search_args

from nas.export.__main__ import main as export_main
from nas.search.__main__ import main as search_main
from nas.study import finished_trials

REPO = Path(__file__).resolve().parents[1]


def _study(url: str) -> optuna.Study:
    return optuna.load_study(study_name="tiny", storage=url)


def _trained_digests(study: optuna.Study) -> list[str]:
    """Digests of the trials that trained (a repeat reuses the first one's result, not trained again)."""
    return [t.user_attrs["spec_digest"] for t in study.trials
            if t.user_attrs.get("steps") and t.user_attrs.get("duplicate_of") is None]


@pytest.mark.slow
def test_two_workers_exact_total_then_export_and_dashboard(postgres_url: str, tmp_path: Path) -> None:
    assert search_main(search_args(tmp_path, "--workers", "2", "--storage", postgres_url, trials=4)) == 0
    study = _study(postgres_url)
    assert len(finished_trials(study)) == 4 and len(study.trials) == 4  # no surplus trial was started
    digests = _trained_digests(study)
    assert len(digests) == len(set(digests)), "a spec was trained twice"
    # nas.export reads the PostgreSQL study; the password does not land in the exported file
    out = tmp_path / "best.yaml"
    assert export_main(["--study", "tiny", "--storage", postgres_url, "--out", str(out)]) == 0
    text = out.read_text()
    assert "base_channels" in text and "postgresql+psycopg://nas:***@" in text
    assert postgres_url.split(":")[2].split("@")[0] not in text  # the password
    check_dashboard_serves(postgres_url, tmp_path / "tiny" / "artifacts")


@pytest.mark.slow
def test_sigkill_mid_trial_loses_nothing_and_is_resumed_on_postgres(postgres_url: str, tmp_path: Path) -> None:
    check_sigkill_mid_trial_and_resume(tmp_path, storage=postgres_url)


@pytest.mark.slow
def test_two_concurrent_searches_share_one_study_and_stop_at_the_total(postgres_url: str, tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "nas.search", *search_args(tmp_path, "--storage", postgres_url, trials=8)]
    # Two nodes' commands, started together on the same study: the second joins the first.
    procs = [subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    for proc in procs:
        _, err = proc.communicate(timeout=400)
        assert proc.returncode == 0, err[-2000:]
    study = _study(postgres_url)
    assert len(finished_trials(study)) == 8 and len(study.trials) == 8
    assert sorted(t.number for t in study.trials) == list(range(8))
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in study.trials)  # none lost or left running
    # a later command on the same study continues it
    assert search_main(search_args(tmp_path, "--storage", postgres_url, trials=10)) == 0
    assert len(finished_trials(_study(postgres_url))) == 10


@pytest.mark.slow
def test_ray_backend_writes_to_the_postgres_study(postgres_url: str, tmp_path: Path) -> None:
    assert search_main([*search_args(tmp_path, "--storage", postgres_url, trials=3), "--backend", "ray"]) == 0
    study = _study(postgres_url)
    assert len(finished_trials(study)) == 3 and len(study.trials) == 3
    assert study.metric_names == ["val_loss", "fid_proxy", "throughput"]
    assert TINY.stem == study.user_attrs["space"]
