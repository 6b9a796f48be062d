"""`GIFTConfig`: the GIFT paper's defaults, the protocols, the schedule, and bad values named."""

from __future__ import annotations

import math

import pytest
import torch
from recipe_helpers import one_thread
from transformers import TrainerCallback

from gift_hf import GIFTConfig, create_model, protocol_config, train_student
from gift_hf.data.images import DIGITS_MEAN, DIGITS_STD, ImageTransform
from gift_hf.engine.config import DSA_STRATEGY, PROTOCOLS


def test_defaults_are_the_gift_student_protocol():
    c = GIFTConfig(output_dir="unused")
    assert (c.optim.value, c.learning_rate, c.weight_decay, c.max_grad_norm) == ("adamw_torch", 1e-3, 1e-4, 0.0)
    assert (c.lr_scheduler_type.value, c.lr_milestones, c.lr_decay) == ("constant", [2 / 3, 5 / 6], 0.2)
    assert c.decay_all_parameters and (c.loss, c.gamma, c.smoothing, c.soft_label_source) == (
        "gift",
        0.1,
        0.1,
        "teacher",
    )


def test_gift_protocol():
    p = protocol_config("gift", output_dir="unused")
    assert (p.num_train_epochs, p.augmentation, p.num_students, p.best_of) == (1000, DSA_STRATEGY, 3, 4)
    # GIFT's own evaluator augmentation (not MTT's one op of six), whole images
    assert (p.augmentation_mode, p.factor_crop) == ("gift", 1)
    # batch 10/50/100/200 for sets of <=10, <=500, <=20k images, and more
    sizes = {n: p.train_batch_size_for(n) for n in (1, 10, 11, 500, 501, 20000, 20001)}
    assert sizes == {1: 10, 10: 10, 11: 50, 500: 50, 501: 100, 20000: 100, 20001: 200}
    assert p.seeds() == [0, 1, 2] and p.replace(seed=3).seeds() == [3, 4, 5]


def test_label_paper_protocol():
    p = protocol_config("label_paper", output_dir="unused")
    assert (p.optim.value, p.optim_args, p.learning_rate, p.weight_decay) == ("sgd", "momentum=0.9", 0.01, 5e-4)
    assert (p.lr_milestones, p.lr_decay, p.train_batch_size_for(40)) == ([0.5], 0.1, 256)
    assert (p.soft_label_source, p.soft_label_kind, p.loss, p.label_source) == (
        "dataset",
        "probabilities",
        "soft_ce",
        "dataset",
    )
    assert (p.num_students, p.best_of) == (5, 1)
    assert (p.augmentation, p.augmentation_mode, p.factor_crop) == (DSA_STRATEGY, "single", 1)  # MTT's DSA
    assert p.replace(loss="ce").label_source == "none"  # hard labels need no soft labels


def test_recipes_hold_the_protocols():
    """recipes/gift/*.yaml, recipes/label_paper/*.yaml and recipes/rded/*.yaml train their students with PROTOCOLS'
    values."""
    import yaml
    from recipe_helpers import REPO

    # The protocol's own exception: batch 100 on Tiny-ImageNet whatever the IPC, and RDED's patch-shuffle
    # factor 1 there (2 on ImageNet-1K). GIFT on ImageNet-1K with ResNet-18: 300 epochs and factor crop 2.
    # DD-Ranking on the embedded digits: 300 epochs, a budget that runs in minutes on a CPU.
    dataset_specific = {
        "tiny_imagenet.yaml": {"batch_sizes", "patch_shuffle_factor"},
        "imagenet1k_resnet18.yaml": {"num_train_epochs", "factor_crop"},
        "digits_convnet3.yaml": {"num_train_epochs"},
    }
    for name, protocol in PROTOCOLS.items():
        recipes = sorted((REPO / "recipes" / name).glob("*.yaml"))
        assert recipes, name
        for path in recipes:
            recipe = yaml.safe_load(path.read_text())
            for key, value in protocol.items():
                if key in recipe and key not in dataset_specific.get(path.name, ()):
                    assert recipe[key] == pytest.approx(value) if isinstance(value, float) else recipe[key] == value, (
                        path.name,
                        key,
                    )


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"learning_rate": 0.0}, r"learning_rate: got 0.0; expected a finite number > 0"),
        ({"learning_rate": math.nan}, r"learning_rate: got nan"),
        ({"learning_rate": -1e-3}, r"learning_rate: got -0.001"),
        ({"per_device_train_batch_size": 0}, r"per_device_train_batch_size: got 0; expected an integer >= 1"),
        ({"per_device_eval_batch_size": -4}, r"per_device_eval_batch_size: got -4"),
        ({"gradient_accumulation_steps": 0}, r"gradient_accumulation_steps: got 0; expected an integer >= 1"),
        ({"num_train_epochs": -1, "max_steps": 0}, r"num_train_epochs/max_steps: .* nothing would be trained"),
        ({"num_train_epochs": 0}, r"num_train_epochs/max_steps: got num_train_epochs=0"),
        ({"lr_milestones": [0.9, 0.5]}, r"lr_milestones: got \[0.9, 0.5\]; expected increasing fractions"),
        ({"lr_decay": 0.0}, r"lr_decay: got 0.0; expected a factor in \(0, 1\]"),
        ({"batch_sizes": [10, 50]}, r"batch_sizes: got \[10, 50\] for batch_size_thresholds"),
        ({"num_students": 0}, r"num_students: got 0; expected >= 1"),
        ({"best_of": 0}, r"best_of: got 0; expected >= 1"),
        ({"label_temperature": 0.0}, r"label_temperature: got 0.0"),
    ],
)
def test_bad_values_name_the_field(changes, message):
    with pytest.raises(ValueError, match=message):
        GIFTConfig(output_dir="unused", **changes)
    with pytest.raises(ValueError, match=r"protocol: got 'mtt'"):
        protocol_config("mtt")


def test_milestones_fall_on_epoch_boundaries_by_hand():
    c = GIFTConfig(output_dir="unused")
    # 6 epochs × 2 steps: ×0.2 after epoch round(2/3·6) = 4 (step 8) and round(5/6·6) = 5 (step 10)
    assert c.lr_milestone_steps(12, 6) == [8, 10]
    # steps not a whole number of epochs: fractions of the steps, round(2/3·10) = 7, round(5/6·10) = 8
    assert c.lr_milestone_steps(10, 3) == [7, 8]


class LearningRates(TrainerCallback):
    def __init__(self):
        self.lrs = []

    def on_step_begin(self, args, state, control, optimizer=None, **kwargs):
        self.lrs.append(optimizer.param_groups[0]["lr"])


@pytest.mark.parametrize(
    "changes, expected",
    [
        ({}, [1e-3] * 8 + [2e-4] * 2 + [4e-5] * 2),  # GIFT: ×0.2 at epochs 4 and 5 of 6
        (
            {
                "lr_milestones": [0.5],
                "lr_decay": 0.1,
                "optim": "sgd",
                "optim_args": "momentum=0.9",
                "learning_rate": 0.01,
            },
            [0.01] * 6 + [0.001] * 6,
        ),  # label paper: ×0.1 at half
        ({"lr_decay": 1.0, "lr_scheduler_type": "linear"}, [1e-3 * (12 - i) / 12 for i in range(12)]),
    ],
    ids=["gift", "label_paper", "linear"],
)
def test_trainer_steps_the_learning_rate(tmp_path, digits, changes, expected):
    """A real GIFTTrainer run of 6 epochs × 2 steps records the learning rate of every step."""
    train = (
        digits["train"].select(range(20)).with_transform(ImageTransform(channels=1, mean=DIGITS_MEAN, std=DIGITS_STD))
    )
    rates = LearningRates()
    config = GIFTConfig(
        output_dir=str(tmp_path),
        loss="ce",
        soft_label_source="none",
        num_train_epochs=6,
        per_device_train_batch_size=10,
        save_strategy="no",
        logging_strategy="no",
        disable_tqdm=True,
        use_cpu=True,
        **changes,
    )
    with one_thread():
        result = train_student(
            config,
            lambda: create_model("gift_convnet_d3", 10, in_chans=1, img_size=8, width=8),
            train,
            callbacks=[rates],
        )
    assert result.steps == 12 and rates.lrs == pytest.approx(expected)


def test_weight_decay_on_every_parameter_or_the_trainers_rule(tmp_path, digits):
    from gift_hf import GIFTTrainer

    model = create_model("gift_convnet_d3", 10, in_chans=1, img_size=8, width=8)
    n = len(list(model.parameters()))
    for every, decayed in ((True, n), (False, None)):
        config = GIFTConfig(
            output_dir=str(tmp_path), decay_all_parameters=every, use_cpu=True, loss="ce", soft_label_source="none"
        )
        trainer = GIFTTrainer(model=model, args=config)
        groups = trainer.create_optimizer().param_groups
        counts = {g["weight_decay"]: len(g["params"]) for g in groups}
        if decayed is not None:
            assert counts[1e-4] == n
        else:  # biases and normalisation weights are exempt
            assert 0 < counts[1e-4] < n and counts[0.0] == n - counts[1e-4]
        assert isinstance(trainer.optimizer, torch.optim.AdamW)


def test_sgd_takes_its_momentum_from_optim_args(tmp_path):
    from gift_hf import GIFTTrainer

    model = create_model("gift_convnet_d3", 10, in_chans=1, img_size=8, width=8)
    config = protocol_config("label_paper", output_dir=str(tmp_path), use_cpu=True)
    optimizer = GIFTTrainer(model=model, args=config).create_optimizer()
    assert isinstance(optimizer, torch.optim.SGD)
    group = optimizer.param_groups[0]
    assert (group["lr"], group["momentum"], group["weight_decay"]) == (0.01, 0.9, 5e-4)
    assert len(group["params"]) == len(list(model.parameters()))  # decay on every parameter


def test_an_optimizer_optim_cannot_name(tmp_path, digits):
    """Plain Adam (L2 decay coupled to the gradient) for the cross-optimizer study, with the decay groups."""
    from gift_hf.studies.loss_benchmark import optimizer_settings

    seen = []

    class Optimizer(TrainerCallback):
        def on_step_begin(self, args, state, control, optimizer=None, **kwargs):
            seen.append((optimizer, [dict(g) for g in optimizer.param_groups]))  # before the schedule steps

    changes, optimizer = optimizer_settings("adam", 2e-3)
    train = (
        digits["train"].select(range(10)).with_transform(ImageTransform(channels=1, mean=DIGITS_MEAN, std=DIGITS_STD))
    )
    config = GIFTConfig(
        output_dir=str(tmp_path),
        loss="ce",
        soft_label_source="none",
        max_steps=1,
        per_device_train_batch_size=10,
        save_strategy="no",
        disable_tqdm=True,
        use_cpu=True,
        **changes,
    )
    with one_thread():
        train_student(
            config,
            create_model("gift_convnet_d3", 10, in_chans=1, img_size=8, width=8),
            train,
            callbacks=[Optimizer()],
            optimizer_cls_and_kwargs=optimizer,
        )
    optimizer, groups = seen[0]
    assert type(getattr(optimizer, "optimizer", optimizer)) is torch.optim.Adam  # accelerate wraps it
    assert (groups[0]["lr"], groups[0]["weight_decay"], groups[1]["params"]) == (2e-3, 1e-4, [])
