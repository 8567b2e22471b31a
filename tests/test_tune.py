"""`python -m nas.search --backend ray`: Ray Tune driving our sampler and study, locally and on two nodes."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import optuna
import pytest
import ray
from optuna.trial import TrialState
from ray.tune.schedulers import FIFOScheduler, TrialScheduler

from nas.backends.ray_tune.backend import RayBackend
from nas.backends.ray_tune.session import check_fits, ray_session
from nas.context import RunContext
from nas.pareto import front_trials
from nas.reports import write_reports
from nas.samplers import sampler_names
from nas.search import SearchSettings, run_search
from nas.search.__main__ import main
from nas.study import finished_trials, trial_spec

os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # read when Ray starts: no token for test clusters

TINY = Path(__file__).parent / "data" / "tiny.yaml"
OBJECTIVES = ["val_loss", "fid_proxy", "throughput"]


def cli_args(out: Path, *extra: str, trials: int = 4) -> list[str]:
    return ["--space", str(TINY), "--budget", "tiny", "--trials", str(trials), "--out", str(out), "--device", "cpu",
            "--sampler", "random", "--backend", "ray", *extra]


def load(out: Path, name: str = "tiny") -> optuna.Study:
    return optuna.load_study(study_name=name, storage=f"sqlite:///{out / name}.db")


def unconstrained_space(tmp_path: Path) -> Path:
    """The tiny space with a parameter limit nothing reaches: every candidate trains (and reaches a rung)."""
    space = tmp_path / "open.yaml"
    space.write_text(f"extends: {TINY}\nname: open\nconstraints: {{max_params: 1.0e9}}\n")
    return space


def settings(out: Path, *, space: Path, trials: int, sampler: str = "random", **kw: object) -> SearchSettings:
    return SearchSettings(space=str(space), trials=trials, sampler=sampler, budget="tiny", device="cpu", out=str(out),
                          backend="ray", **kw)


def context(out: Path) -> RunContext:
    return RunContext.resolve(space=TINY, budget="tiny", device="cpu", out=out)


@pytest.mark.slow
class TestLocalRay:
    """One local Ray (started the way the CLI starts it) shared by these tests."""

    @pytest.fixture(scope="class", autouse=True)
    def local_ray(self) -> object:
        with ray_session():
            yield ray

    @pytest.fixture(scope="class")
    def smoke(self, tmp_path_factory: pytest.TempPathFactory) -> Path:
        out = tmp_path_factory.mktemp("ray")
        assert main(cli_args(out, trials=4)) == 0
        return out

    def test_local_ray_is_sized_to_the_machine(self) -> None:
        assert ray.cluster_resources()["CPU"] == os.cpu_count()

    def test_smoke_search_records_like_the_optuna_backend(self, smoke: Path) -> None:
        study = load(smoke)
        assert len(finished_trials(study)) == 4 and len(study.trials) == 4
        assert study.metric_names == OBJECTIVES
        for t in study.trials:
            attrs = t.user_attrs
            assert {"spec_digest", "params", "macs", "budget", "seed", "status", "feasible"} <= set(attrs)
            assert trial_spec(t) is not None
            assert attrs["ray_attempts"] == 1 and attrs["ray_node_id"] and ":" in attrs["ray_host"]
            if t.state == TrialState.COMPLETE:
                assert len(t.values) == 3
            if attrs["status"] == "ok":
                assert t.values == [attrs["val_loss"], attrs["fid_proxy"], attrs["throughput"]]
                assert {"kid_mean", "fid_floor", "curve", "rung0_val_loss"} <= set(attrs)
            if attrs["status"] == "infeasible":
                assert t.state == TrialState.COMPLETE and "steps" not in attrs  # the gate stopped it
        assert (smoke / "tiny" / "artifacts").is_dir() and any((smoke / "tiny" / "artifacts").iterdir())
        assert list((smoke / "tiny" / "ray").iterdir()), "Ray's results go under <out>/<study>/ray"
        paths = write_reports(study, smoke / "again")
        assert all(p.stat().st_size > 0 for p in paths.values())

    def test_export_reads_the_study(self, smoke: Path) -> None:
        from nas.export.__main__ import main as export_main

        assert front_trials(load(smoke)), "the tiny run should have a feasible trial"
        target = smoke / "best.yaml"
        assert export_main(["--study", "tiny", "--storage", f"sqlite:///{smoke}/tiny.db", "--out", str(target)]) == 0
        assert "spec:" in target.read_text()

    def test_rerun_continues_the_study(self, smoke: Path) -> None:
        before = {t.number: (t.state, t.values) for t in load(smoke).trials}
        assert main(cli_args(smoke, trials=5)) == 0
        study = load(smoke)
        assert len(finished_trials(study)) == 5 and len(study.trials) == 5  # no surplus, nothing lost
        assert {t.number: (t.state, t.values) for t in study.trials if t.number in before} == before

    def test_a_video_space_searches_under_ray(self, tmp_path: Path) -> None:
        tiny_video = TINY.parent / "tiny_video.yaml"
        assert main(["--space", str(tiny_video), "--budget", "tiny", "--trials", "2", "--out", str(tmp_path),
                     "--device", "cpu", "--sampler", "random", "--backend", "ray"]) == 0
        study = load(tmp_path, "tiny_video")
        trials = finished_trials(study)
        assert len(trials) == 2 and all(trial_spec(t)["frames"] == 4 for t in trials)
        for t in trials:
            if t.user_attrs["status"] == "ok":  # a trained clip candidate has both video scores
                assert t.user_attrs["fvd_proxy"] > t.user_attrs["fvd_floor"] > 0 and "fid_proxy" in t.user_attrs
        assert any(t.user_attrs["status"] == "ok" for t in trials), [t.user_attrs.get("reason") for t in trials]

    def test_scheduler_stops_pruned_errors_fail_and_retries_agree(self, tmp_path: Path) -> None:
        marker = tmp_path / "crashed-once"

        def flaky(cfg: dict, *, context: RunContext, cpus: float, stopping: str) -> None:
            from nas.backends.ray_tune.trainable import ray_trial

            if cfg["number"] == 1:
                raise RuntimeError("this worker always crashes")
            if cfg["number"] == 2 and not marker.exists():
                marker.touch()
                raise RuntimeError("this worker crashes once")
            ray_trial(cfg, context=context, cpus=cpus, stopping=stopping)

        space = unconstrained_space(tmp_path)
        backend = RayBackend(scheduler=StopTrialZero(), trainable=flaky)
        # Only the Ray scheduler stops trials here (the search's own rule is off).
        assert run_search(settings(tmp_path, space=space, trials=3, stopping="none"), backend=backend,
                          progress=False).exit_code == 0
        study = load(tmp_path, "open")
        by_number = {t.number: t for t in study.trials}
        stopped, failed, retried = by_number[0], by_number[1], by_number[2]
        assert stopped.state == TrialState.PRUNED and stopped.user_attrs["status"] == "pruned"
        assert "stopped by StopTrialZero at rung 0" in stopped.user_attrs["reason"]
        assert "rung0_val_loss" in stopped.user_attrs and "fid_proxy" not in stopped.user_attrs
        assert failed.state == TrialState.FAIL and failed.user_attrs["status"] == "error"
        assert "failed after" in failed.user_attrs["reason"]
        assert retried.state == TrialState.COMPLETE and retried.user_attrs["status"] == "ok"
        assert len(finished_trials(study)) == 3 and len(study.trials) == 3
        front = {t.number for t in front_trials(study)}
        assert front == {2}  # neither the pruned nor the failed trial


class StopTrialZero(FIFOScheduler):
    """Stops the trial with Optuna number 0 at its first rung report."""

    def on_trial_result(self, tune_controller: object, trial: object, result: dict) -> str:
        if trial.config["number"] == 0 and "rung" in result:
            return TrialScheduler.STOP
        return TrialScheduler.CONTINUE


@pytest.mark.parametrize("sampler", sampler_names())
def test_searcher_drives_the_study_with_every_sampler(tmp_path: Path, sampler: str) -> None:
    """The driver side alone (no Ray cluster): ask, sample, the four ways a trial ends, FINISHED."""
    from ray.tune.search import Searcher

    from nas.backends.ray_tune.searcher import StudySearcher

    searcher = StudySearcher(context(tmp_path), trials=4, sampler=sampler)
    asked = {key: searcher.suggest(key) for key in "abcd"}
    assert searcher.suggest("e") is None  # four running: no room
    study = searcher.study
    for cfg in asked.values():
        trial = study.trials[cfg["number"]]
        assert trial.state == TrialState.RUNNING and trial.params  # decisions sampled on the driver
        assert cfg["optuna_trial_id"] == trial._trial_id
    searcher.on_trial_complete("a", {"optuna_state": "COMPLETE", "values": [0.1, 20.0, 300.0], "val_loss": 0.1})
    searcher.on_trial_complete("b", {"rung": 1, "step": 2, "val_loss": 0.5})  # stopped by the scheduler
    searcher.on_trial_complete("c", None, error=True)  # Ray gave up on it
    searcher.on_trial_complete("d", None)  # ended without a report
    states = {key: study.trials[cfg["number"]] for key, cfg in asked.items()}
    assert states["a"].state == TrialState.COMPLETE and states["a"].values == [0.1, 20.0, 300.0]
    assert states["b"].state == TrialState.PRUNED and states["b"].user_attrs["reason"].endswith("at rung 0 (step 2)")
    assert states["c"].state == TrialState.FAIL and states["c"].user_attrs["status"] == "error"
    assert states["d"].state == TrialState.FAIL and states["d"].user_attrs["status"] == "interrupted"
    replacement = searcher.suggest("e")  # the interrupted trial does not count: one more
    assert replacement["number"] == 4 and searcher.suggest("f") is None
    assert searcher.close() == 1 and study.trials[4].user_attrs["status"] == "interrupted"
    again = pickle.loads(pickle.dumps(searcher))  # Tune pickles its searcher with the experiment
    last = again.suggest("g")
    assert last["number"] == 5
    optuna.Trial(again.study, last["optuna_trial_id"]).set_user_attr("status", "diverged")  # as a worker does
    again.on_trial_complete("g", {"optuna_state": "FAIL", "values": None, "val_loss": float("nan")})
    assert again.suggest("h") == Searcher.FINISHED  # a candidate's own failure counts


def test_searcher_stops_after_trials_keep_failing_in_ray(tmp_path: Path) -> None:
    from ray.tune.search import Searcher

    from nas.backends.ray_tune.searcher import MAX_CONSECUTIVE_ERRORS, StudySearcher

    searcher = StudySearcher(context(tmp_path), trials=10, sampler="random")
    for i in range(MAX_CONSECUTIVE_ERRORS):
        assert not searcher.broken
        searcher.suggest(str(i))
        searcher.on_trial_complete(str(i), None, error=True)
    assert searcher.broken and searcher.suggest("next") == Searcher.FINISHED


@pytest.mark.parametrize(("extra", "message"), [
    (["--workers", "2"], "--workers: --workers is for the optuna backend; with Ray use --max-concurrent"),
    (["--cpus-per-trial", "0"], "--cpus-per-trial: expected a positive number, got 0.0"),
    (["--device", "cuda:1"], "--device: Ray assigns devices to trials"),
    (["--budget", "huge"], "--budget: unknown budget 'huge'"),
])
def test_bad_input_fails_before_ray_starts(tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str],
                                           message: str) -> None:
    args = [a for a in cli_args(tmp_path) if a not in ("--budget", "tiny")] + extra
    if "--budget" not in extra:
        args += ["--budget", "tiny"]
    with pytest.raises(SystemExit) as exc:
        main(args)
    assert exc.value.code == 2 and message in capsys.readouterr().err
    assert not ray.is_initialized()


def test_a_trial_bigger_than_the_local_machine_is_an_error() -> None:
    from nas.errors import ConfigError

    check_fits({"CPU": 2.0}, cpus=2, gpus=0)
    with pytest.raises(ConfigError, match="--gpus-per-trial: a trial asks for 0.5 GPUs, this machine's Ray has 0"):
        check_fits({"CPU": 2.0}, cpus=1, gpus=0.5)


@pytest.mark.slow
def test_two_node_cluster_runs_trials_on_both_nodes(tmp_path: Path) -> None:
    from ray.cluster_utils import Cluster

    assert not ray.is_initialized()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False,
                                                           "object_store_memory": 100 * 1024**2})
    try:
        cluster.add_node(num_cpus=1, object_store_memory=100 * 1024**2)
        space = unconstrained_space(tmp_path)
        # Two at once on two one-CPU nodes: one trial on each.
        cfg = settings(tmp_path, space=space, trials=2, address=cluster.address, max_concurrent=2)
        assert run_search(cfg, progress=False).exit_code == 0
        assert not ray.is_initialized(), "the search disconnects from a cluster it joined"
        study = load(tmp_path, "open")
        assert len(finished_trials(study)) == 2 and len(study.trials) == 2
        nodes = {t.user_attrs["ray_node_id"] for t in study.trials}
        assert nodes == {node.node_id for node in cluster.list_all_nodes()}
        assert len({t.user_attrs["ray_host"] for t in study.trials}) == 2
    finally:
        cluster.shutdown()
