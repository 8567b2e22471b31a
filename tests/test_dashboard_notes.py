"""What a user reads: finite values for every trial, notes that explain trials, artifacts in order,
progress in logs, labelled plots, and studies written before these changes still working."""

from __future__ import annotations

import io
import json
import logging
import math
import threading
import urllib.request
from pathlib import Path
from wsgiref.simple_server import WSGIRequestHandler, make_server

import optuna
import optuna_dashboard
import pytest
from optuna.artifacts import FileSystemArtifactStore, get_all_artifact_meta
from optuna.trial import TrialState
from PIL import Image

from nas.export.__main__ import main as export_main
from nas.notes import trial_url
from nas.reports import axis_label
from nas.search.__main__ import main as search_main
from nas.search.progress import SearchProgress
from nas.spec import UNetSpec
from nas.study import SPEC_ATTR, StudyCounts, finished_trials, trial_spec

DATA = Path(__file__).parent / "data"
TINY = DATA / "tiny.yaml"


def search(out: Path, *extra: str, trials: int = 6) -> int:
    return search_main(["--space", str(TINY), "--budget", "tiny", "--trials", str(trials), "--out", str(out),
                        "--device", "cpu", "--sampler", "random", *extra])


def load(out: Path) -> optuna.Study:
    return optuna.load_study(study_name="tiny", storage=f"sqlite:///{out}/tiny.db")


def note_of(study: optuna.Study, number: int) -> str:
    handle = optuna.load_study(study_name=study.study_name, storage=study._storage,
                               sampler=optuna.samplers.RandomSampler())
    return optuna_dashboard.get_note(optuna.Trial(handle, study.trials[number]._trial_id))


@pytest.fixture(scope="module")
def searched(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("notes")
    assert search(out) == 0
    return out


class _Quiet(WSGIRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


def test_no_trial_stores_a_non_finite_value_and_infeasible_ones_sit_at_the_no_skill_point(searched: Path) -> None:
    from evaluators.no_skill import no_skill_scores
    from evaluators.proxy import EvalContext
    from nas.space import load_space

    study = load(searched)
    infeasible = [t for t in study.trials if t.user_attrs["status"] == "infeasible"]
    assert infeasible, "the tiny space's max_params rejects some random candidates"
    space = load_space(TINY)
    context = EvalContext.load(dataset="mnist", image_size=28, channels=1, device="cpu")
    for t in study.trials:
        assert t.state != TrialState.COMPLETE or all(math.isfinite(v) for v in t.values)
    for t in infeasible:
        expected = no_skill_scores(UNetSpec.from_dict(trial_spec(t)), budget=space.budgets["tiny"], context=context)
        assert t.values[:2] == [expected["val_loss"], expected["fid_proxy"]]
        assert 0.9 < t.values[0] < 1.1  # the eps target's variance: a zero predictor's loss
        assert t.values[2] == 0.0 and "throughput" not in t.user_attrs  # never timed
        assert t.constraints["max_params"] > 0 and t.system_attrs["constraints"][0] > 0  # both forms kept
    trained = [t for t in study.trials if t.user_attrs["status"] == "ok"]
    assert all(t.values[0] < min(i.values[0] for i in infeasible) for t in trained)  # they learned something

    app = optuna_dashboard.wsgi(f"sqlite:///{searched}/tiny.db")
    server = make_server("127.0.0.1", 0, app, handler_class=_Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/api/studies/{study._study_id}"
        with urllib.request.urlopen(url, timeout=30) as resp:
            detail = json.loads(resp.read())
    finally:
        server.shutdown()
    values = [v for t in detail["trials"] for v in t.get("values") or []]
    assert values and all(isinstance(v, (int, float)) for v in values)  # no "inf" strings for the plots


def test_trial_notes_say_what_the_numbers_are_and_why_a_trial_ended(searched: Path) -> None:
    study = load(searched)
    for t in study.trials:
        note = note_of(study, t.number)
        assert note.startswith(f"## Trial {t.number}: ")
        for name, unit in (("val_loss", "MSE"), ("fid_proxy", "FD"), ("throughput", "images/s")):
            assert f"| {name} |" in note and f"| {unit} |" in note
        assert "budget `tiny`" in note and f"digest `{t.user_attrs['spec_digest']}`" in note
        if t.user_attrs["status"] == "infeasible":
            params = t.user_attrs["params"]
            assert "infeasible, not trained" in note
            assert f"breaks `max_params`: {params:,} parameters measured, limit 60,000" in note
            assert "(no-skill point: not trained)" in note and "(not timed)" in note
        else:
            assert "on the Pareto front" in note or "dominated" in note
    study_note = optuna_dashboard.get_note(study)
    assert "# Study `tiny`" in study_note and "knee" in study_note and "Smart Selection" in study_note
    front = [t.number for t in study.trials if trial_url(study, t.number) in study_note]
    assert front, "the front's trials are linked"
    assert (searched / "tiny" / "report.md").read_text() == study_note


def test_spec_is_an_artifact_and_a_hidden_attribute_and_samples_come_first(searched: Path) -> None:
    study = load(searched)
    for t in study.trials:
        assert "spec" not in t.user_attrs and isinstance(t.system_attrs[SPEC_ATTR], dict)
        metas = get_all_artifact_meta(t, storage=study._storage)
        names = [m.filename for m in metas]
        assert names == (["samples.png", "spec.yaml"] if t.user_attrs["status"] == "ok" else ["spec.yaml"])
        by_name = {m.filename: m for m in metas}
        assert by_name["spec.yaml"].mimetype == "text/plain"
        if "samples.png" in by_name:
            store = FileSystemArtifactStore(str(searched / "tiny" / "artifacts"))
            with store.open_reader(by_name["samples.png"].artifact_id) as fh:
                image = Image.open(io.BytesIO(fh.read()))
            assert image.width >= 8 * 28 * 4  # 8 columns of 28-pixel digits at 4x


def write_legacy_study(source: optuna.Study, path: Path) -> None:
    """``source`` as the search wrote studies before 2026-12: infeasible trials at infinite values,
    the spec as a long user attribute, no hidden spec attribute, no notes, no artifacts."""
    legacy = optuna.create_study(study_name=source.study_name, storage=f"sqlite:///{path}",
                                 directions=source.directions)
    legacy.set_metric_names(source.metric_names)
    for key, value in source.user_attrs.items():
        legacy.set_user_attr(key, value)
    worst = [math.inf if d == optuna.study.StudyDirection.MINIMIZE else -math.inf for d in source.directions]
    for t in source.trials:
        legacy.add_trial(optuna.trial.create_trial(
            state=t.state, values=worst if t.user_attrs.get("status") == "infeasible" else t.values,
            params=t.params, distributions=t.distributions, user_attrs={**t.user_attrs, "spec": trial_spec(t)},
            system_attrs={k: v for k, v in t.system_attrs.items() if k != SPEC_ATTR and not k.startswith("artifacts:")}))


def test_a_study_written_before_these_changes_resumes_exports_and_reports(searched: Path, tmp_path: Path) -> None:
    write_legacy_study(load(searched), tmp_path / "tiny.db")
    old = {t.number: t.values for t in load(tmp_path).trials}
    infeasible = [n for n, values in old.items() if values and any(math.isinf(v) for v in values)]
    assert infeasible  # the old way: infinite values
    assert search(tmp_path, trials=8) == 0
    study = load(tmp_path)
    assert len(finished_trials(study)) == 8
    assert {t.number: t.values for t in study.trials if t.number in old} == old
    assert all(SPEC_ATTR in t.system_attrs for t in study.trials if t.number not in old)
    legacy_ok = next(n for n, t in enumerate(study.trials) if n in old and t.user_attrs.get("status") == "ok")
    for pick in ("knee", f"trial:{legacy_ok}"):
        target = tmp_path / f"{pick.replace(':', '')}.yaml"
        assert export_main(["--study", "tiny", "--results", str(tmp_path), "--pick", pick, "--out", str(target)]) == 0
        assert "spec:" in target.read_text()
    assert "inf" in note_of(study, infeasible[0])  # an old infinite value is shown as it is, not hidden
    assert (tmp_path / "tiny" / "trials.csv").stat().st_size > 0


def test_progress_is_one_line_per_finished_trial_when_not_a_terminal(caplog: pytest.LogCaptureFixture) -> None:
    progress = SearchProgress(3, StudyCounts(finished=0, running=0, front=0), stream=io.StringIO())
    with caplog.at_level(logging.INFO, logger="nas.search"):
        progress.update(StudyCounts(finished=1, running=1, front=1))
        progress.update(StudyCounts(finished=1, running=0, front=1))  # no trial finished: no line
        progress.update(StudyCounts(finished=3, running=0, front=2))
    progress.close()
    assert [r.getMessage() for r in caplog.records] == [
        "search: 1/3 trials finished, 1 running, front of 1 trial",
        "search: 3/3 trials finished, 0 running, front of 2 trials"]


def test_plots_name_units_and_direction_and_the_dashboard_command_runs_from_any_shell(searched: Path) -> None:
    from nas.context import RunContext, dashboard_executable

    assert axis_label("val_loss", "minimize") == "val_loss (MSE, lower is better)"
    assert axis_label("throughput", "maximize") == "throughput (images/s, higher is better)"
    assert Path(dashboard_executable()).is_absolute()
    command = RunContext.resolve(space=TINY, budget="tiny", device="cpu", out=searched).dashboard_command()
    assert command.startswith(dashboard_executable()) and f"sqlite:///{searched}/tiny.db" in command


def test_our_note_store_round_trips_through_the_dashboards_own_functions() -> None:
    from nas.note_store import CHUNK_CHARS, read_note, save_notes

    study = optuna.create_study(directions=["minimize", "maximize"])
    study.optimize(lambda t: (t.suggest_float("x", 0, 1), 1.0), n_trials=2)
    storage, sid = study._storage, study._study_id
    first, second = (optuna.Trial(study, t._trial_id) for t in study.trials)
    long_body = "".join(f"line {i}\n" for i in range(700))  # three chunks
    assert len(long_body) > 2 * CHUNK_CHARS

    assert save_notes(storage, sid, {None: "# study", first._trial_id: long_body}) == 2
    assert optuna_dashboard.get_note(study) == "# study" and optuna_dashboard.get_note(first) == long_body
    assert optuna_dashboard.get_note(second) == ""
    # A shorter note clears the chunks the longer one left, as the dashboard's own save does.
    assert save_notes(storage, sid, {first._trial_id: "short", None: "# study"}) == 1  # the study note is unchanged
    assert optuna_dashboard.get_note(first) == "short"
    # Notes the dashboard wrote (a user editing one in the browser) are read, and versions go on from theirs.
    optuna_dashboard.save_note(second, "edited in the dashboard")
    attrs = storage.get_study_system_attrs(sid)
    assert read_note(attrs, second._trial_id) == "edited in the dashboard"
    version = attrs[f"dashboard:{second._trial_id}:note_ver"]
    save_notes(storage, sid, {second._trial_id: "rewritten"})
    assert optuna_dashboard.get_note(second) == "rewritten"
    assert storage.get_study_system_attrs(sid)[f"dashboard:{second._trial_id}:note_ver"] == version + 1
