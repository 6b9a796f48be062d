"""`evaluate_distilled` and its students: protocols applied to real students, best-of-k, stored labels."""

from __future__ import annotations

import statistics

import pytest
from experiment_helpers import MODEL_KWARGS, small_digits, teacher_run
from recipe_helpers import one_thread
from transformers import TrainerCallback

from gift_hf.data.images import DIGITS_MEAN, DIGITS_STD
from gift_hf.data.selection import build_random_distilled
from gift_hf.engine.config import protocol_config
from gift_hf.evaluation.evaluate import StudentSpec, evaluate_distilled, train_on_distilled
from gift_hf.models.modeling import load_teacher

STUDENT = StudentSpec(
    "gift_convnet_d3", in_chans=1, img_size=8, image_mean=DIGITS_MEAN, image_std=DIGITS_STD, model_kwargs=MODEL_KWARGS
)


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    # One thread per process: on a shared 2-core machine OpenMP threads that wait on each
    # other make CPU training several times slower.
    with one_thread():
        yield


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    return load_teacher(teacher_run(tmp_path_factory))


@pytest.fixture(scope="module")
def data():
    return small_digits()


class LearningRates(TrainerCallback):
    """Records the learning rate each optimizer step is taken with."""

    def __init__(self):
        self.lrs = []

    def on_step_begin(self, args, state, control, optimizer=None, **kwargs):
        self.lrs.append(optimizer.param_groups[0]["lr"])


# ---------------------------------------------------------------------- real students
def test_evaluate_distilled_online_teacher_best_of_k(teacher, data):
    subset, _ = build_random_distilled(data["train"], 2, seed=0)
    seen = []
    result = evaluate_distilled(
        subset,
        data["test"],
        "gift",
        student=STUDENT,
        teacher=teacher,
        num_train_epochs=4,
        num_students=2,
        best_of=2,
        augmentation="crop",
        callback=seen.append,
        output_dir="unused",
    )
    assert [s.seed for s in result.students] == [0, 1] and seen == result.students
    for s in result.students:
        # 20 images → batch 50 by the size rule → 1 step per epoch; evaluated after steps 2 and 4
        assert (s.batch_size, s.steps, len(s.accuracies)) == (50, 4, 2)
        assert s.accuracy == max(s.accuracies) and s.final_accuracy == s.accuracies[-1]
        assert all(0.0 <= a <= 1.0 for a in s.accuracies)
    accs = [100 * s.accuracy for s in result.students]
    assert result.mean == pytest.approx(statistics.fmean(accs))
    assert result.std == pytest.approx(statistics.stdev(accs))
    assert str(result) == f"{result.mean:.2f} ± {result.std:.2f}"


def test_label_paper_stores_labels_once_and_steps_its_schedule(teacher, data):
    """Without stored soft labels the teacher computes them (un-augmented); SGD's rate drops ×0.1 at half."""
    subset, _ = build_random_distilled(data["train"], 1, seed=1)
    rates = LearningRates()
    result = evaluate_distilled(
        subset,
        data["test"],
        "label_paper",
        student=STUDENT,
        teacher=teacher,
        num_train_epochs=4,
        num_students=1,
        augmentation="none",
        trainer_callbacks=[rates],
        output_dir="unused",
    )
    # 10 images, batch 256: one step per epoch; milestone at epoch 2
    assert rates.lrs == pytest.approx([0.01, 0.01, 0.001, 0.001])
    assert result.students[0].batch_size == 256  # the protocol's fixed batch, not the GIFT size rule
    assert len(result.students[0].accuracies) == 1


def test_same_seed_same_student(teacher, data):
    subset, _ = build_random_distilled(data["train"], 1, seed=2)
    config = protocol_config("gift", num_train_epochs=2, best_of=1, augmentation="crop", output_dir="unused")
    (first,) = train_on_distilled(subset, data["test"], config, [5], STUDENT, teacher)
    (second,) = train_on_distilled(subset, data["test"], config, [5], STUDENT, teacher)
    assert first.accuracies == second.accuracies


def test_missing_labels_are_refused_clearly(data):
    subset, _ = build_random_distilled(data["train"], 1, seed=0)
    with pytest.raises(ValueError, match="no 'soft_label' column"):
        train_on_distilled(subset, data["test"], protocol_config("label_paper", num_train_epochs=1), [0], STUDENT)
    with pytest.raises(ValueError, match="needs a teacher"):  # GIFTTrainer's one check
        train_on_distilled(subset, data["test"], protocol_config("gift", num_train_epochs=1), [0], STUDENT)
    with pytest.raises(ValueError, match="has no soft labels and no teacher"):
        evaluate_distilled(subset, data["test"], "label_paper", student=STUDENT, num_train_epochs=1)


def test_a_diverged_student_is_reported_as_failed_never_scored(teacher, data):
    """Issue: a diverged run (learning rate 1e20) used to print 100.00 ± 0.00."""
    import math

    from gift_hf.engine.training import TrainingResult
    from gift_hf.evaluation.evaluate import EvaluationResult, failed_student
    from gift_hf.studies.report import fmt_acc, summarize

    subset, _ = build_random_distilled(data["train"], 1, seed=0)
    result = evaluate_distilled(
        subset,
        data["test"],
        "gift",
        student=STUDENT,
        teacher=teacher,
        num_train_epochs=2,
        num_students=2,
        best_of=1,
        augmentation="none",
        learning_rate=1e20,
        output_dir="unused",
    )
    assert result.failed == 2 and result.accuracies == [] and math.isnan(result.mean)
    assert str(result) == "failed (2/2 students diverged)"
    assert all("training diverged at step" in s.failure and s.accuracy is None for s in result.students)
    # one of three diverged: mean ± std over the two others, and the failure is said
    config = protocol_config("gift", output_dir="unused")
    good = [
        TrainingResult(seed=s, accuracies=[a], steps=1, batch_size=1, train_seconds=0.0)
        for s, a in ((0, 0.5), (1, 0.7))
    ]
    mixed = EvaluationResult(config, [*good, failed_student(2, config, FloatingPointError("boom"))])
    assert (mixed.failed, mixed.accuracies) == (1, [0.5, 0.7]) and mixed.mean == pytest.approx(60.0)
    assert str(mixed) == f"60.00 ± {mixed.std:.2f} (1/3 students diverged, not scored)"
    (row,) = summarize([{"params": {"set": "d"}, **r.to_dict()} for r in mixed.students], ["set"])
    assert (row["n"], row["failed"], row["mean"]) == (2, 1, pytest.approx(60.0))
    assert fmt_acc(row) == f"60.0 ± {row['std']:.1f} (1 failed)"
    # a NaN evaluation is never the best of k
    with pytest.raises(ValueError, match=r"accuracies: evaluation 1 is nan"):
        TrainingResult(seed=0, accuracies=[0.5, math.nan], steps=1, batch_size=1, train_seconds=0.0).accuracy


# ------------------------------------------------------------------ students together
@pytest.mark.parametrize(
    "changes", [{}, {"lr_scheduler_type": "cosine", "lr_milestones": []}, {"device_resident": "never"}]
)
def test_evaluate_distilled_trains_its_students_together_under_any_schedule_and_data_path(teacher, data, changes):
    """One engine: every protocol setting trains the seeds as one population, and each student is the run its seed
    alone would give (the DataLoader path as well as the device-resident one)."""
    subset, _ = build_random_distilled(data["train"], 2, seed=0)
    common = dict(
        student=STUDENT,
        teacher=teacher,
        num_train_epochs=4,
        num_students=3,
        best_of=2,
        augmentation="crop",
        output_dir="unused",
        use_cpu=True,
        **changes,
    )
    together = evaluate_distilled(subset, data["test"], "gift", **common)
    assert [s.seed for s in together.students] == [0, 1, 2]
    for s in together.students:
        assert s.metrics["students_together"] == 3 and (s.batch_size, s.steps, len(s.accuracies)) == (50, 4, 2)
    alone = evaluate_distilled(subset, data["test"], "gift", **{**common, "num_students": 1, "seed": 1})
    assert alone.students[0].accuracies == pytest.approx(together.students[1].accuracies, abs=1e-9)


def test_fewer_evaluation_points_than_best_of_are_said(teacher, data, caplog):
    """best_of=4 over 2 steps has 2 distinct evaluation points: each student reports the best of 2, and the log says
    so (never a silent "best of 4")."""
    import logging

    subset, _ = build_random_distilled(data["train"], 1, seed=0)
    with caplog.at_level(logging.WARNING, logger="gift_hf.engine.training"):
        result = evaluate_distilled(
            subset,
            data["test"],
            "gift",
            student=STUDENT,
            teacher=teacher,
            num_train_epochs=2,
            num_students=2,
            best_of=4,
            output_dir="unused",
        )
    assert all(len(s.accuracies) == 2 for s in result.students)
    assert "best_of=4: 2 training steps give 2 distinct evaluation points" in caplog.text


def test_report_to_is_said_to_be_ignored_by_an_evaluation(teacher, data, caplog):
    import logging

    subset, _ = build_random_distilled(data["train"], 1, seed=0)
    with caplog.at_level(logging.WARNING, logger="gift_hf.evaluation.evaluate"):
        evaluate_distilled(
            subset,
            data["test"],
            "gift",
            student=STUDENT,
            teacher=teacher,
            num_train_epochs=1,
            num_students=1,
            best_of=1,
            report_to="tensorboard",
            output_dir="unused",
        )
    assert "report_to=['tensorboard'] is ignored here" in caplog.text
