"""Evaluation protocols and `evaluate_distilled`: presets, overrides, schedule, real students."""

from __future__ import annotations

import statistics

import pytest
import torch
from transformers import TrainerCallback

from experiment_helpers import MODEL_KWARGS, small_digits, teacher_run
from recipe_helpers import one_thread
from gift_hf.commands._args import parse_args
from gift_hf.data import DIGITS_MEAN, DIGITS_STD
from gift_hf.evaluation import (
    DSA_STRATEGY,
    OPTIMIZERS,
    ProtocolArguments,
    StudentSpec,
    build_optimizer,
    build_scheduler,
    evaluate_distilled,
    get_protocol,
    train_student,
)
from gift_hf.modeling import create_model, load_teacher
from gift_hf.selection import build_random_distilled

SPEC = StudentSpec("gift_convnet_d3", in_chans=1, img_size=8, image_mean=DIGITS_MEAN, image_std=DIGITS_STD,
                   model_kwargs=MODEL_KWARGS)


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


# ------------------------------------------------------------------ presets and overrides
def test_gift_preset_follows_the_spec():
    p = get_protocol("gift")
    assert (p.optimizer, p.learning_rate, p.weight_decay) == ("adamw", 1e-3, 1e-4)
    assert (p.schedule, p.milestones, p.lr_decay) == ("multistep", [2 / 3, 5 / 6], 0.2)
    assert p.epochs == 1000 and p.augmentation == DSA_STRATEGY
    assert (p.loss, p.soft_label_source, p.num_students, p.best_of) == ("gift", "teacher", 3, 4)
    # batch 10/50/100/200 for sets of <=10, <=500, <=20k images, and more
    sizes = {n: p.batch_size_for(n) for n in (1, 10, 11, 500, 501, 20000, 20001)}
    assert sizes == {1: 10, 10: 10, 11: 50, 500: 50, 501: 100, 20000: 100, 20001: 200}


def test_label_paper_preset_follows_the_spec():
    p = get_protocol("label_paper")
    assert (p.optimizer, p.momentum, p.weight_decay) == ("sgd", 0.9, 5e-4)
    assert p.schedule == "multistep" and p.milestones == [0.5] and p.lr_decay == 0.1
    assert (p.soft_label_source, p.soft_label_kind, p.loss) == ("dataset", "probabilities", "soft_ce")
    assert (p.num_students, p.best_of) == (5, 1)
    assert p.seeds() == [0, 1, 2, 3, 4]


def test_overrides_change_only_what_is_named():
    base, p = get_protocol("gift"), get_protocol("gift", epochs=7, batch_size=None, seed=3, num_students=2)
    assert (p.epochs, p.seeds(), p.batch_size) == (7, [3, 4], None)
    assert {k: v for k, v in p.to_dict().items() if k not in ("epochs", "seed", "num_students")} == {
        k: v for k, v in base.to_dict().items() if k not in ("epochs", "seed", "num_students")}
    # a preset's rate belongs to its optimizer: switching takes the new optimizer's rate
    assert get_protocol("label_paper", optimizer="adamw").learning_rate == OPTIMIZERS["adamw"]
    assert get_protocol("label_paper", optimizer="adamw", learning_rate=5e-4).learning_rate == 5e-4
    assert get_protocol("label_paper", batch_size=0).batch_size_for(40) == 50  # back to the size rule


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"optimizer": "lbfgs"}, "optimizer: got 'lbfgs'"),
        ({"milestones": [0.9, 0.5]}, "milestones: got [0.9, 0.5]"),
        ({"batch_sizes": [10, 50]}, "batch_sizes: got [10, 50]"),
        ({"loss": "hinge"}, "loss: got 'hinge'"),
        ({"augmentation": "warp"}, "warp"),
        ({"epochs": 0}, "epochs: got 0"),
        ({"learning_rat": 0.1}, "unknown field(s) ['learning_rat']"),
    ],
)
def test_bad_protocols_name_the_field(overrides, message):
    with pytest.raises(ValueError, match=None) as err:
        get_protocol("gift", **overrides)
    assert message in str(err.value)
    with pytest.raises(ValueError, match="protocol: got 'mtt'"):
        get_protocol("mtt")


def test_protocol_options_parse_from_cli_and_yaml(tmp_path):
    (args,) = parse_args((ProtocolArguments,), ["--protocol", "label_paper", "--epochs", "9", "--milestones", "0.25",
                                                "0.75"], "x", "")
    p = args.to_protocol()
    assert (p.name, p.epochs, p.milestones, p.optimizer) == ("label_paper", 9, [0.25, 0.75], "sgd")
    config = tmp_path / "protocol.yaml"
    config.write_text("loss: kl\ntemperature: 4.0\nbest_of: 2\n")
    (args,) = parse_args((ProtocolArguments,), [str(config)], "x", "")
    p = args.to_protocol(default="gift")
    assert (p.name, p.loss, p.temperature, p.best_of, p.optimizer) == ("gift", "kl", 4.0, 2, "adamw")


# ----------------------------------------------------------------------- optimisation
def test_optimizers_are_built_with_the_protocol_hyperparameters():
    model = create_model("gift_convnet_d3", 10, in_chans=1, img_size=8, width=8)
    n_params = len(list(model.parameters()))
    for name, cls in [("sgd", torch.optim.SGD), ("adam", torch.optim.Adam), ("adamw", torch.optim.AdamW),
                      ("rmsprop", torch.optim.RMSprop)]:
        opt = build_optimizer(model, get_protocol("label_paper", optimizer=name))
        group = opt.param_groups[0]
        assert type(opt) is cls and len(group["params"]) == n_params  # weight decay on every parameter
        assert group["lr"] == OPTIMIZERS[name] and group["weight_decay"] == 5e-4
    assert build_optimizer(model, get_protocol("label_paper")).param_groups[0]["momentum"] == 0.9


def test_multistep_milestones_fall_on_epoch_boundaries():
    # 6 epochs × 2 steps: ×0.2 after epoch round(2/3·6)=4 (step 8) and round(5/6·6)=5 (step 10)
    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=1e-3)
    sched = build_scheduler(opt, get_protocol("gift"), total_steps=12, steps_per_epoch=2)
    lrs = []
    for _ in range(12):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs == pytest.approx([1e-3] * 8 + [2e-4] * 2 + [4e-5] * 2)


# ---------------------------------------------------------------------- real students
def test_evaluate_distilled_online_teacher_best_of_k(teacher, data):
    subset, _ = build_random_distilled(data["train"], 2, seed=0)
    seen = []
    result = evaluate_distilled(subset, data["test"], "gift", student=SPEC, teacher=teacher, epochs=4,
                                num_students=2, best_of=2, augmentation="crop", callback=seen.append)
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
    result = evaluate_distilled(subset, data["test"], "label_paper", student=SPEC, teacher=teacher, epochs=4,
                                num_students=1, augmentation="none", trainer_callbacks=[rates])
    # 10 images, batch 256: one step per epoch; milestone at epoch 2
    assert rates.lrs == pytest.approx([0.01, 0.01, 0.001, 0.001])
    assert len(result.students[0].accuracies) == 1


def test_same_seed_same_student(teacher, data):
    subset, _ = build_random_distilled(data["train"], 1, seed=2)
    protocol = get_protocol("gift", epochs=2, best_of=1, augmentation="crop")
    first = train_student(subset, data["test"], protocol, 5, SPEC, teacher)
    second = train_student(subset, data["test"], protocol, 5, SPEC, teacher)
    assert first.accuracies == second.accuracies


def test_missing_labels_are_refused_clearly(data):
    subset, _ = build_random_distilled(data["train"], 1, seed=0)
    with pytest.raises(ValueError, match="no 'soft_label' column"):
        train_student(subset, data["test"], get_protocol("label_paper", epochs=1), 0, SPEC)
    with pytest.raises(ValueError, match="no teacher was given"):
        train_student(subset, data["test"], get_protocol("gift", epochs=1), 0, SPEC)
    with pytest.raises(ValueError, match="has none and no teacher"):
        evaluate_distilled(subset, data["test"], "label_paper", student=SPEC, epochs=1)
