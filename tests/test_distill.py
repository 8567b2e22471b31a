"""Distillation as a proxy-training option: the budget key, the teacher checks, the teacher's
prediction in the student's parameterisation, and a distilled candidate moving toward its teacher."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from evaluators.budget import Budget, parse_budget
from evaluators.distill import Distill, Teacher, check_teacher, load_teacher
from evaluators.proxy import EvalContext, evaluate
from nas.diffusion import GaussianDiffusion
from nas.errors import ConfigError
from nas.model_io import write_model_yaml
from nas.space import load_space
from nas.spec import LevelSpec, UNetSpec
from nas.train.__main__ import main as train_main

DATA = Path(__file__).parent / "data"
TEACHER_SPEC = UNetSpec(image_size=28, base_channels=8, norm_groups=4, head_channels=8,
                        levels=(LevelSpec(blocks=1, decoder_blocks=2), LevelSpec(channel_mult=2, blocks=1)))
STUDENT_SPEC = UNetSpec(image_size=28, base_channels=8, norm_groups=4, head_channels=8,
                        levels=(LevelSpec(blocks=1, decoder_blocks=1, conv="depthwise_separable"),
                                LevelSpec(channel_mult=1, blocks=1, decoder_blocks=1)))
TEACHER_BUDGET = {"steps": 60, "batch_size": 16, "fid_samples": 0, "sample_steps": 2, "warmup_steps": 2,
                  "val_images": 8, "val_timesteps": 2, "throughput_batch": 4}


@pytest.fixture(scope="module")
def teacher_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A teacher trained by nas.train (60 steps on the embedded digits: seconds)."""
    root = tmp_path_factory.mktemp("teacher")
    config = root / "teacher.yaml"
    write_model_yaml(config, TEACHER_SPEC, sections={"data": {"dataset": "mnist", "image_size": 28, "channels": 1},
                                                     "budgets": {"tiny": TEACHER_BUDGET}})
    run = root / "run"
    assert train_main(["--config", str(config), "--out", str(run), "--budget", "tiny", "--steps", "60",
                       "--device", "cpu", "--no-progress"]) == 0
    return run


def test_the_budget_key_parses_round_trips_and_refuses_bad_values() -> None:
    budget = parse_budget({"distill": {"teacher": "runs/t", "weight": 0.5}})
    assert budget.distill == Distill(teacher="runs/t", weight=0.5)
    assert parse_budget(budget.to_dict()) == budget and "distill" not in Budget().to_dict()
    assert parse_budget({"distill": {"teacher": "runs/t"}}).distill.weight == 1.0
    for raw, key, message in (({"weight": 1}, "distill", "expected {teacher: RUN_DIR, weight: W}"),
                              ({"teacher": 3}, "distill.teacher", "expected the path of a nas.train run"),
                              ({"teacher": "t", "weight": 0}, "distill.weight", "expected a number above 0"),
                              ({"teacher": "t", "wieght": 1}, "distill", "expected {teacher: RUN_DIR")):
        with pytest.raises(ConfigError, match=message) as err:
            parse_budget({"distill": raw})
        assert err.value.key == key


def _space(tmp_path: Path, teacher: str) -> Path:
    """The tiny space with its ``tiny`` budget distilling from ``teacher``."""
    path = tmp_path / "distilled.yaml"
    path.write_text(f"extends: {DATA / 'tiny.yaml'}\nname: distilled\n"
                    + yaml.safe_dump({"budgets": {"tiny": {"distill": {"teacher": teacher, "weight": 1.0}}}}))
    return path


def test_the_space_refuses_missing_untrained_and_mismatched_teachers(tmp_path: Path, teacher_run: Path) -> None:
    with pytest.raises(ConfigError, match=r"distilled\.yaml.*budgets\.tiny\.distill\.teacher: no trained run at "
                                          r"'nowhere'"):
        load_space(_space(tmp_path, "nowhere"))
    untrained = tmp_path / "untrained"
    untrained.mkdir()
    write_model_yaml(untrained / "model.yaml", TEACHER_SPEC)
    with pytest.raises(ConfigError, match=r"has no trained weights \(no 'checkpoint:' in model\.yaml\)"):
        load_space(_space(tmp_path, str(untrained)))
    with pytest.raises(ConfigError, match=r"models 28x28 with 1 channel\(s\) data; the space's data are 32x32 with "
                                          r"1 channel\(s\)") as err:
        check_teacher(str(teacher_run), image_size=32, channels=1)
    assert err.value.key == "distill.teacher"
    assert load_space(_space(tmp_path, str(teacher_run))).budgets["tiny"].distill.teacher == str(teacher_run)


def test_the_teachers_prediction_is_expressed_as_the_students_target(teacher_run: Path) -> None:
    teacher = load_teacher(Distill(teacher=str(teacher_run)), device="cpu")
    assert load_teacher(Distill(teacher=str(teacher_run / "model.yaml")), device="cpu") is teacher  # loaded once
    x_t, t = torch.randn(3, 1, 28, 28), torch.tensor([5, 300, 900])
    with torch.no_grad():
        eps = teacher.model(x_t, t)
    same = GaussianDiffusion.from_spec(TEACHER_SPEC)
    assert torch.allclose(teacher.target(same, x_t, t), eps, atol=1e-5)
    v_student = GaussianDiffusion(schedule=same.schedule, steps=same.num_timesteps, prediction="v")
    x0 = same.x0_from_eps(x_t, t, eps)
    assert torch.allclose(teacher.target(v_student, x_t, t), same.v_from(x0, eps, t), atol=1e-4)
    # Another schedule: each student step reads the teacher at the step of the nearest noise level.
    linear = GaussianDiffusion(schedule="linear", steps=same.num_timesteps)
    steps = teacher._teacher_steps(linear)
    assert steps.shape == (linear.num_timesteps,) and bool((steps[1:] >= steps[:-1]).all())
    gap = (same.alphas_cumprod[steps] - linear.alphas_cumprod).abs().max()
    assert float(gap) < 0.01


def test_a_distilled_candidate_moves_toward_its_teacher(teacher_run: Path) -> None:
    context = EvalContext.load(dataset="mnist", image_size=28, channels=1, device="cpu", fid=False)
    budget = Budget(steps=40, batch_size=16, fid_samples=0, sample_steps=2, warmup_steps=2, val_images=8,
                    val_timesteps=2, throughput_batch=4, timing_repeat_s=0.01,
                    distill=Distill(teacher=str(teacher_run), weight=1.0))
    result = evaluate(STUDENT_SPEC, budget=budget, context=context)
    assert result.status == "ok", result.reason
    curve = [loss for _, loss in result.distill_curve]
    assert len(curve) == 40 and result.distill_loss == curve[-1]
    first, last = sum(curve[:5]) / 5, sum(curve[-5:]) / 5
    assert last < 0.7 * first, curve  # the loss toward the teacher falls
    assert result.teacher_seconds is not None and 0 < result.teacher_seconds < result.train_seconds
    plain = evaluate(STUDENT_SPEC, budget=Budget(**{**budget.to_dict(), "distill": None}), context=context)
    assert plain.distill_curve == [] and plain.distill_loss is None and plain.teacher_seconds is None
    assert isinstance(load_teacher(budget.distill, device="cpu"), Teacher)


@pytest.mark.slow
def test_a_search_with_a_distilling_budget_records_the_teacher_term(tmp_path: Path, teacher_run: Path) -> None:
    import optuna

    from nas.search.__main__ import main as search_main

    space = _space(tmp_path, str(teacher_run))
    out = tmp_path / "search"
    assert search_main(["--space", str(space), "--budget", "tiny", "--trials", "2", "--out", str(out),
                        "--device", "cpu", "--sampler", "random", "--no-prune"]) == 0
    study = optuna.load_study(study_name="distilled", storage=f"sqlite:///{out / 'distilled'}.db")
    trained = [t for t in study.trials if t.user_attrs.get("status") == "ok"]
    assert trained, [t.user_attrs.get("reason") for t in study.trials]
    for t in trained:
        assert t.user_attrs["distill_loss"] > 0 and t.user_attrs["teacher_seconds"] > 0
        assert t.user_attrs["budget"] == "tiny"
