"""`python -m nas.search`: trials, the gate, duplicates, workers, resume after SIGKILL, reports, dashboard."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import warnings
from pathlib import Path
from wsgiref.simple_server import WSGIRequestHandler, make_server

import optuna
import pytest
from optuna.trial import TrialState

import evaluators.proxy
from nas.search.__main__ import main
from nas.study import finished_trials, trial_spec

TINY = Path(__file__).parent / "data" / "tiny.yaml"


def search_args(out: Path, *extra: str, trials: int = 4, space: Path = TINY, budget: str = "tiny") -> list[str]:
    return ["--space", str(space), "--budget", budget, "--trials", str(trials), "--out", str(out),
            "--device", "cpu", "--sampler", "random", *extra]


def load(out: Path, name: str = "tiny") -> optuna.Study:
    return optuna.load_study(study_name=name, storage=f"sqlite:///{out / name}.db")


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("search")
    assert main(search_args(out, trials=6)) == 0
    return out


def test_search_records_trials_reports_and_metrics(finished: Path) -> None:
    study = load(finished)
    assert len(finished_trials(study)) == 6
    assert study.metric_names == ["val_loss", "fid_proxy", "throughput"]
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE and t.user_attrs["feasible"]]
    assert complete
    for t in complete:
        attrs = t.user_attrs
        assert attrs["status"] == "ok"
        assert t.values == [attrs["val_loss"], attrs["fid_proxy"], attrs["throughput"]]
        assert trial_spec(t)["base_channels"] in (8, 16) and attrs["params"] <= 60000
        assert "spec" not in attrs  # the spec is an artifact and a hidden attribute, not a long JSON line
        assert {"macs", "latency_ms", "kid_mean", "fid_floor", "curve"} <= set(attrs)
        assert attrs["gate_timing_seconds"] > 0  # the throughput objective was measured by the gate
    for name in ("pareto.csv", "trials.csv", "pareto.png", "report.md"):
        assert (finished / "tiny" / name).stat().st_size > 0
    assert len((finished / "tiny" / "trials.csv").read_text().strip().splitlines()) == 1 + len(study.trials)
    header = (finished / "tiny" / "trials.csv").read_text().splitlines()[0].split(",")
    assert "fid_proxy" in header and "fvd_proxy" not in header  # the temporal score is a video search's
    assert "# Study `tiny`" in (finished / "tiny" / "report.md").read_text()


def test_infeasible_candidates_are_not_trained(finished: Path) -> None:
    study = load(finished)
    infeasible = [t for t in study.trials if t.user_attrs.get("status") == "infeasible"]
    assert infeasible, "the tiny space's max_params should reject some random candidates"
    for t in infeasible:
        assert t.state == TrialState.COMPLETE and t.user_attrs["feasible"] is False
        assert "steps" not in t.user_attrs and "train_seconds" not in t.user_attrs  # no training step
        assert t.constraints["max_params"] > 0
        assert t.system_attrs["constraints"][0] > 0  # the form optuna-dashboard 0.21 reads


def test_rerun_continues_the_same_study(finished: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = {t.number: t.values for t in load(finished).trials}
    assert main(search_args(finished, trials=8)) == 0
    study = load(finished)
    assert len(finished_trials(study)) == 8
    assert {t.number: t.values for t in study.trials if t.number in before} == before
    out = capsys.readouterr().out
    assert f"optuna-dashboard sqlite:///{finished}/tiny.db --artifact-dir {finished}/tiny/artifacts" in out


def test_repeated_spec_is_not_trained_twice(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    space = tmp_path / "two.yaml"
    space.write_text(f"extends: {TINY}\nname: two\nconstraints: {{}}\n"
                     "space: {base_channels: 8, resample: avgpool, per_level: {channel_mult: [1, 1], blocks: 1, "
                     "conv: [{choice: [standard, depthwise_separable]}, standard]}}\n")
    calls = []
    real = evaluators.proxy.evaluate
    monkeypatch.setattr(evaluators.proxy, "evaluate", lambda spec, **kw: calls.append(spec) or real(spec, **kw))
    # No early stopping: whether the second spec is stopped at its rung depends on its timed
    # throughput against the first's (close here, and moved by load), and a stopped trial is not
    # a result to reuse.
    assert main(search_args(tmp_path, "--stopping", "none", trials=5, space=space)) == 0
    study = load(tmp_path, "two")
    digests = [t.user_attrs["spec_digest"] for t in study.trials]
    assert len(set(digests)) == 2 and len(calls) == 2  # only the 2 distinct specs were trained
    for t in study.trials:
        if t.user_attrs.get("duplicate_of") is not None:
            first = study.trials[t.user_attrs["duplicate_of"]]
            assert t.values == first.values and t.user_attrs["spec_digest"] == first.user_attrs["spec_digest"]


@pytest.mark.slow
def test_two_workers_reach_exactly_the_requested_trials(tmp_path: Path) -> None:
    assert main(search_args(tmp_path, "--workers", "2", trials=6)) == 0
    study = load(tmp_path)
    assert len(finished_trials(study)) == 6
    assert len(study.trials) == 6  # no surplus trial was started
    assert len({t.number for t in study.trials}) == 6


@pytest.mark.slow
def test_sigkill_mid_trial_loses_nothing_and_is_resumed(tmp_path: Path) -> None:
    check_sigkill_mid_trial_and_resume(tmp_path, storage=f"sqlite:///{tmp_path}/tiny.db")


def check_sigkill_mid_trial_and_resume(tmp_path: Path, *, storage: str) -> None:
    """SIGKILL a search mid-trial; the rerun keeps every finished trial, marks the killed one FAIL
    and retries it once with the same decisions (also run against PostgreSQL: test_postgres.py)."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    # A budget long enough that the kill lands inside a trial.
    space = tmp_path / "slow.yaml"
    space.write_text(f"extends: {TINY}\nname: tiny\nbudgets: {{slow: {{steps: 60, batch_size: 4, fid_samples: 8, "
                     "sample_steps: 2, val_images: 8, val_timesteps: 2, throughput_batch: 4, rungs: []}}\n")
    slow = [sys.executable, "-m", "nas.search", *search_args(tmp_path, "--storage", storage, trials=5, space=space,
                                                             budget="slow")]
    proc = subprocess.Popen(slow, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while time.time() < deadline:
        time.sleep(0.5)
        try:
            study = optuna.load_study(study_name="tiny", storage=storage)
        except Exception:  # noqa: BLE001 - the study may not exist yet
            continue
        states = [t.state for t in study.trials]
        # Kill inside training, after every decision is made (the spec digest is recorded after the
        # last suggestion): a kill mid-suggestion leaves a retry that must sample the rest afresh.
        training = [t for t in study.trials if t.state == TrialState.RUNNING and "spec_digest" in t.user_attrs]
        if states.count(TrialState.COMPLETE) >= 2 and training:
            break
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = {t.number: (t.state, t.values) for t in study.trials if t.state != TrialState.RUNNING}
    killed = [t.number for t in optuna.load_study(study_name="tiny", storage=storage).trials
              if t.state == TrialState.RUNNING]
    assert killed, "the kill should land during a trial"

    rerun = subprocess.run(slow, env=env, capture_output=True, text=True, timeout=400)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    study = optuna.load_study(study_name="tiny", storage=storage)
    assert {n: (t.state, t.values) for n, t in enumerate(study.trials) if n in before} == before
    assert len(finished_trials(study)) == 5
    interrupted = study.trials[killed[0]]
    assert interrupted.state == TrialState.FAIL
    # Re-enqueued once with the same decisions (Optuna's heartbeat retry callback).
    retries = [t for t in study.trials if t.system_attrs.get("failed_trial") == interrupted.number]
    assert len(retries) == 1 and retries[0].params == interrupted.params


def test_bad_space_exits_2_without_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("space: {per_level: {conv: {choice: [resnet]}}}\n")
    proc = subprocess.run([sys.executable, "-m", "nas.search", "--space", str(bad), "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert "space.per_level.conv: unknown value 'resnet'" in proc.stderr
    assert not (tmp_path / "bad.db").exists()  # nothing written for bad input


class _Quiet(WSGIRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


def test_dashboard_serves_the_study(finished: Path) -> None:
    check_dashboard_serves(f"sqlite:///{finished}/tiny.db", finished / "tiny" / "artifacts")


def check_dashboard_serves(storage: str, artifacts: Path) -> None:
    """optuna-dashboard's API reads the search's study ``tiny`` in ``storage``: objectives, the front,
    the study note, a trial's attributes and artifacts (also run against PostgreSQL)."""
    import optuna_dashboard
    from optuna.artifacts import FileSystemArtifactStore

    app = optuna_dashboard.wsgi(storage, artifact_store=FileSystemArtifactStore(str(artifacts)))
    server = make_server("127.0.0.1", 0, app, handler_class=_Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_port}"
    try:
        def get(path: str) -> bytes:
            with urllib.request.urlopen(base + path, timeout=30) as resp:
                return resp.read()

        summaries = json.loads(get("/api/studies"))["study_summaries"]
        study_id = next(s["study_id"] for s in summaries if s["study_name"] == "tiny")
        detail = json.loads(get(f"/api/studies/{study_id}"))
        assert detail["objective_names"] == ["val_loss", "fid_proxy", "throughput"]
        assert detail["best_trials"], "the Pareto trials"
        assert "Pareto front" in detail["note"]["body"]
        # A completed trial: one the scheduler stopped has its rung loss but no FID proxy.
        trained = [t for t in detail["trials"] if t["state"] == "Complete"
                   and any(a["key"] == "val_loss" for a in t["user_attrs"])]
        trial = trained[0]
        attrs = {a["key"]: a["value"] for a in trial["user_attrs"]}
        assert {"spec_digest", "params", "macs", "val_loss", "fid_proxy", "kid_mean", "feasible", "status"} <= set(attrs)
        names = {a["filename"]: a["artifact_id"] for a in trial["artifacts"]}
        assert {"samples.png", "spec.yaml"} <= set(names)
        png = get(f"/artifacts/{study_id}/{trial['trial_id']}/{names['samples.png']}")
        assert png.startswith(b"\x89PNG")
        assert b"base_channels" in get(f"/artifacts/{study_id}/{trial['trial_id']}/{names['spec.yaml']}")
    finally:
        server.shutdown()


@pytest.mark.parametrize("stopping", ["halving", "none"])
def test_the_scheduler_stops_a_dominated_candidate_at_its_first_rung(tmp_path: Path, stopping: str) -> None:
    # A search that has just begun, with two earlier candidates planted at rung 0 that are better on
    # everything the rung knows (held-out loss and throughput): the next candidates are dominated.
    # Two, because trial 0 sits at the rung too: the top third of up to six is the planted pair,
    # whatever trial 0's timed throughput (which load shifts) makes of the ranks below them.
    assert main(search_args(tmp_path, "--seed", "3", trials=1)) == 0
    study = load(tmp_path)
    for _ in range(2):
        study.add_trial(optuna.trial.create_trial(
            state=TrialState.PRUNED,
            user_attrs={"rung0_val_loss": 0.0, "throughput": 1e12, "status": "pruned",
                        "reason": "planted by the test"}))
    assert main(search_args(tmp_path, "--seed", "3", "--stopping", stopping, trials=5)) == 0
    trained = [t for t in load(tmp_path).trials[3:] if t.user_attrs.get("status") not in ("infeasible", None)
               and t.user_attrs.get("duplicate_of") is None]
    assert trained, "seed 3 draws feasible candidates after the planted one"
    for t in trained:
        if stopping == "none":
            assert t.state == TrialState.COMPLETE and t.user_attrs["steps"] == 4
            continue
        attrs = t.user_attrs
        assert t.state == TrialState.PRUNED and attrs["status"] == "pruned"
        assert attrs["steps"] == 2 and "rung0_val_loss" in attrs  # stopped at the rung, its loss kept
        assert attrs["reason"].startswith("stopped at rung 0 (step 2, held-out loss ")
        assert "successive halving: non-dominated rank" in attrs["reason"]
        assert "fid_proxy" not in attrs  # a stopped candidate skips the scoring


def test_a_worker_killed_before_its_heartbeat_thread_ran_still_goes_stale(tmp_path: Path) -> None:
    """The trial's first heartbeat is recorded at the ask: a worker that dies before Optuna's
    heartbeat thread first runs leaves a trial that goes stale and is failed, not one a rerun
    waits for forever."""
    from optuna.storages import RDBStorage, fail_stale_trials

    from nas.study import ask_if_room

    storage = RDBStorage(f"sqlite:///{tmp_path}/hb.db", heartbeat_interval=1, grace_period=2)
    study = optuna.create_study(study_name="hb", storage=storage, directions=["minimize"])
    ask = ask_if_room(study, trials=1, lock=tmp_path / ".ask.lock")
    assert ask.trial is not None  # and no heartbeat thread is ever started: the worker "died"
    assert ask_if_room(study, trials=1, lock=tmp_path / ".ask.lock").trial is None  # it still counts as running
    # SQLite's clock has whole seconds, so "older than the 2 s grace" can take up to a second more.
    deadline = time.time() + 15
    while study.trials[0].state == TrialState.RUNNING and time.time() < deadline:
        time.sleep(0.5)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fail_stale_trials(study)
    assert study.trials[0].state == TrialState.FAIL
