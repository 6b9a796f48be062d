"""K students at once through GIFTTrainer: equal to K separate GIFTTrainer runs, under every protocol."""

from __future__ import annotations

import math

import pytest
import torch

from gift_hf import create_model, protocol_config
from gift_hf.data.images import DIGITS_MEAN, DIGITS_STD
from gift_hf.engine.population import StudentPopulation
from gift_hf.engine.trainer import population_refusal
from gift_hf.engine.training import train_student, train_students

SEEDS = [0, 1, 2]


def build():
    return create_model(
        "gift_convnet_d3", 10, in_chans=1, img_size=8, width=8, image_mean=DIGITS_MEAN, image_std=DIGITS_STD
    )


@pytest.fixture(scope="module")
def sets(digits, digits_transform):
    train = digits["train"].select(range(30)).with_transform(digits_transform)
    test = digits["test"].select(range(60)).with_transform(digits_transform)
    return train, test


@pytest.fixture(scope="module")
def teacher():
    torch.manual_seed(123)
    return build().eval()


def _config(protocol: str, tmp_path, **changes):
    values = dict(
        num_train_epochs=4,
        per_device_train_batch_size=10,
        batch_sizes=None,
        best_of=2,
        eval_every_epochs=0,
        output_dir=str(tmp_path),
        use_cpu=True,
        save_strategy="no",
        logging_strategy="no",
        report_to="none",
        disable_tqdm=True,
    )
    if protocol == "label_paper":  # stored soft labels are a column; here: the teacher online, same SGD protocol
        values.update(soft_label_source="teacher", soft_label_kind=None, per_device_train_batch_size=10)
    values.update(changes)
    return protocol_config(protocol, **values)


def _weights(model: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def _logits(model: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return model(pixel_values=images).logits


def _assert_same(together, separate, images, forward):
    """Same function within 1e-5 (logits); with the loop forward the weights are equal too. (vmap's grouped
    convolutions sum in another order: the conv biases that instance norm cancels have a zero gradient up to
    rounding, which AdamW's normalised step turns into different values that change no output.)"""
    for a, b in zip(together, separate):
        assert a.seed == b.seed and a.failure is None and b.failure is None
        assert len(a.accuracies) == len(b.accuracies) == 2
        assert a.accuracies == pytest.approx(b.accuracies, abs=1e-9)
        diff = (_logits(a.model, images) - _logits(b.model, images)).abs().max().item()
        assert diff < 1e-5, f"seed {a.seed}: logits differ by {diff}"
        if forward == "loop":
            assert torch.equal(_weights(a.model), _weights(b.model))


@pytest.mark.parametrize("forward", ["vmap", "loop"])
@pytest.mark.parametrize("protocol", ["gift", "label_paper", "rded"])
def test_three_students_together_equal_three_separate_trainer_runs(protocol, forward, sets, teacher, tmp_path):
    train, test = sets
    config = _config(protocol, tmp_path)
    together = train_students(config, build, train, test, seeds=SEEDS, teacher=teacher, forward=forward, quiet=True)
    separate = [
        train_student(config.replace(seed=s, data_seed=s), build, train, test, teacher=teacher, quiet=True)
        for s in SEEDS
    ]
    assert together[0].metrics["students_together"] == 3
    _assert_same(together, separate, torch.stack(test[:60]["pixel_values"]), forward)
    # the students really differ (their own init, order and draws)
    assert (_weights(together[0].model) - _weights(together[1].model)).abs().max() > 1e-3


@pytest.mark.parametrize("forward", ["vmap", "loop"])
def test_both_forwards_warmup_max_steps_and_per_student_learning_rates(forward, sets, teacher, tmp_path):
    train, test = sets
    config = _config(
        "gift",
        tmp_path,
        max_steps=7,
        warmup_steps=2,
        lr_scheduler_type="linear",
        lr_milestones=[],
        lr_decay=1.0,
        best_of=1,
    )
    rates = [1e-3, 3e-3, 1e-2]
    together = train_students(
        config, build, train, test, seeds=SEEDS, learning_rates=rates, teacher=teacher, forward=forward, quiet=True
    )
    separate = [
        train_student(
            config.replace(seed=s, data_seed=s, learning_rate=lr), build, train, test, teacher=teacher, quiet=True
        )
        for s, lr in zip(SEEDS, rates)
    ]
    images = torch.stack(test[:60]["pixel_values"])
    for a, b in zip(together, separate):
        assert a.steps == b.steps == 7
        assert (_logits(a.model, images) - _logits(b.model, images)).abs().max().item() < 1e-5


def test_gradient_accumulation_trains_students_together(sets, teacher, tmp_path):
    train, test = sets
    config = _config("gift", tmp_path, gradient_accumulation_steps=2, per_device_train_batch_size=5, best_of=1)
    together = train_students(config, build, train, test, seeds=[3, 4], teacher=teacher, quiet=True)
    separate = [
        train_student(config.replace(seed=s, data_seed=s), build, train, test, teacher=teacher, quiet=True)
        for s in (3, 4)
    ]
    images = torch.stack(test[:60]["pixel_values"])
    for a, b in zip(together, separate):
        assert (_logits(a.model, images) - _logits(b.model, images)).abs().max().item() < 1e-5


def test_bf16_students_train_together(sets, teacher, tmp_path):
    train, test = sets
    config = _config("rded", tmp_path, bf16=True, best_of=1)
    results = train_students(config, build, train, test, seeds=SEEDS, teacher=teacher, quiet=True)
    assert all(r.failure is None and 0 <= r.accuracy <= 1 for r in results)


def test_a_diverged_student_fails_alone(sets, teacher, tmp_path):
    train, test = sets
    config = _config("label_paper", tmp_path, best_of=1, num_train_epochs=3)
    results = train_students(
        config, build, train, test, seeds=SEEDS, learning_rates=[0.01, 1e12, 0.01], teacher=teacher, quiet=True
    )
    assert results[1].failure is not None and "diverged at step" in results[1].failure
    assert results[1].accuracy is None
    assert results[0].failure is None and results[2].failure is None
    assert math.isfinite(results[0].accuracy) and math.isfinite(results[2].accuracy)


def test_clipping_is_refused_in_one_line(sets, teacher, tmp_path):
    train, test = sets
    config = _config("gift", tmp_path, max_grad_norm=1.0)
    assert "max_grad_norm=1.0" in population_refusal(config)
    with pytest.raises(ValueError, match=r"max_grad_norm=1.0: gradient clipping .* one at a time"):
        train_students(config, build, train, test, seeds=SEEDS, teacher=teacher, quiet=True)


def test_population_checks_its_students():
    with pytest.raises(ValueError, match="seeds: got 1 for 2 students"):
        StudentPopulation([build(), build()], [0])
    with pytest.raises(ValueError, match=r"learning_rates: got -1"):
        StudentPopulation([build(), build()], [0, 1], learning_rates=[1e-3, -1])
    bn = [create_model("resnet10t", 10, in_chans=1, img_size=8) for _ in range(2)]
    with pytest.raises(ValueError, match="batch norm or dropout"):
        StudentPopulation(bn, [0, 1], forward="vmap")(torch.zeros(2, 3, 1, 8, 8))


def test_dropout_students_train_together_with_the_loop_forward(sets, teacher, tmp_path):
    """A dropout student cannot run under vmap (its draws would not be its own run's): "auto" runs the loop."""
    train, test = sets

    def dropout_student():
        return create_model(
            "resnet10t", 10, in_chans=1, img_size=8, drop_rate=0.2, image_mean=DIGITS_MEAN, image_std=DIGITS_STD
        )

    population = StudentPopulation.build(dropout_student, [0, 1])
    assert population.forward_mode_for(torch.zeros(2, 4, 1, 8, 8)) == "loop"
    config = _config("gift", tmp_path, best_of=1, num_train_epochs=1)
    results = train_students(config, dropout_student, train, test, seeds=[0, 1], teacher=teacher, quiet=True)
    assert [r.failure for r in results] == [None, None] and all(0 <= r.accuracy <= 1 for r in results)
