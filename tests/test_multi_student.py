"""Many students at once: the vectorised students equal K separate runs of the plain loop."""

from __future__ import annotations

import math

import pytest
import torch

from gift_hf import create_model
from gift_hf.engine.multi_student import (
    StudentTrainingArgs,
    _StackedOptimizer,
    _torch_optimizer,
    train_students,
)

MODEL = "gift_convnet_d3"
KWARGS = {"width": 8}
DSA = "color_crop_cutout_flip_scale_rotate"


@pytest.fixture(scope="module")
def tensors(digits, digits_transform):
    def of(ds):
        rows = ds.with_transform(digits_transform)[: len(ds)]
        return torch.stack(rows["pixel_values"]), torch.tensor(rows["label"])

    train_x, train_y = of(digits["train"].select(range(40)))
    test_x, test_y = of(digits["test"].select(range(120)))
    return train_x, train_y, test_x, test_y


@pytest.fixture(scope="module")
def teacher():
    torch.manual_seed(123)
    return create_model(MODEL, 10, in_chans=1, img_size=8, width=8).eval()


def _both(tensors, teacher, args, seeds, lrs, forward="vmap"):
    common = dict(seeds=seeds, learning_rates=lrs, args=args, teacher=teacher, return_models=True)
    together = train_students(MODEL, KWARGS, *tensors, forward=forward, **common)
    separate = train_students(MODEL, KWARGS, *tensors, vectorized=False, **common)
    return together, separate


def _logits(run, images):
    run.model.eval()
    with torch.no_grad():
        return run.model(pixel_values=images).logits


@pytest.mark.parametrize("forward", ["vmap", "loop"])
def test_three_students_equal_three_separate_runs_sgd_dsa_teacher(tensors, teacher, forward):
    # 3 epochs × 4 steps: DSA draws, batch order and init per seed; KL on teacher logits of each augmented batch.
    args = StudentTrainingArgs(loss="kl", loss_kwargs={"temperature": 4.0}, optimizer="sgd", epochs=3, batch_size=10,
                               augmentation=DSA, eval_every=1, schedule="step", step_size=2)
    together, separate = _both(tensors, teacher, args, seeds=[0, 1, 2], lrs=[0.01, 0.05, 0.1], forward=forward)
    assert [r.seed for r in together] == [0, 1, 2] and [r.learning_rate for r in together] == [0.01, 0.05, 0.1]
    for a, b in zip(together, separate):
        assert a.finite and b.finite
        assert a.eval_epochs == b.eval_epochs == [0, 1, 2]
        for (name, pa), pb in zip(a.model.named_parameters(), b.model.parameters()):
            torch.testing.assert_close(pa, pb, atol=1e-5, rtol=0, msg=name)
        torch.testing.assert_close(_logits(a, tensors[2]), _logits(b, tensors[2]), atol=1e-5, rtol=0)
        assert a.accuracies == pytest.approx(b.accuracies, abs=1 / 120 + 1e-9)
    # the students really differ (seeds and learning rates are their own)
    assert not torch.allclose(_logits(together[0], tensors[2]), _logits(together[1], tensors[2]))


def test_same_seed_different_learning_rates_adamw_cutmix_gift(tensors, teacher):
    args = StudentTrainingArgs(loss="gift", optimizer="adamw", weight_decay=1e-4, epochs=2, batch_size=10,
                               augmentation="flip_crop", mix="cutmix", schedule="cosine", eval_every=1)
    together, separate = _both(tensors, teacher, args, seeds=[7, 7, 7], lrs=[1e-3, 5e-3, 1e-2])
    for a, b in zip(together, separate):
        # Adam divides by sqrt(v): conv biases in front of instance norm get (exactly) zero gradient up to
        # rounding, which Adam turns into ±lr steps. They do not change the outputs, which agree.
        torch.testing.assert_close(_logits(a, tensors[2]), _logits(b, tensors[2]), atol=1e-4, rtol=1e-3)
    # same seed: same initial weights, so the learning rate is the only difference
    first = [p for p in together[0].model.parameters()]
    assert not torch.allclose(first[0], next(together[2].model.parameters()))


def test_stacked_optimizer_equals_torch_optim_per_student():
    gen = torch.Generator().manual_seed(0)
    start = torch.randn(3, 4, 5, generator=gen)
    lrs = torch.tensor([0.1, 0.01, 0.001])
    for name in ("sgd", "adam", "adamw"):
        args = StudentTrainingArgs(optimizer=name, weight_decay=0.01)
        params = {"w": start.clone()}
        stacked = _StackedOptimizer(params, args)
        refs = [torch.nn.Parameter(start[k].clone()) for k in range(3)]
        optims = [_torch_optimizer(torch.nn.ParameterList([refs[k]]), float(lrs[k]), args) for k in range(3)]
        for _ in range(6):
            grads = torch.randn(3, 4, 5, generator=gen)
            stacked.step(params, {"w": grads}, lrs)
            for k in range(3):
                refs[k].grad = grads[k].clone()
                optims[k].step()
        for k in range(3):
            torch.testing.assert_close(params["w"][k], refs[k].detach(), atol=1e-6, rtol=0, msg=name)


def test_hard_labels_without_teacher_and_eval_schedule(tensors):
    args = StudentTrainingArgs(loss="ce", optimizer="sgd", epochs=10, batch_size=20, eval_every=2,
                               eval_start_fraction=0.5)
    runs = train_students(MODEL, KWARGS, *tensors, seeds=[0, 1], learning_rates=[0.05, 0.05], args=args)
    # evaluated after epochs 6, 8, 10 (1-based): every 2nd epoch past half of training
    assert all(r.eval_epochs == [5, 7, 9] and len(r.accuracies) == 3 for r in runs)
    assert all(r.best_accuracy == max(r.accuracies) and r.final_accuracy == r.accuracies[-1] for r in runs)
    assert all(0.0 <= a <= 1.0 for r in runs for a in r.accuracies)
    assert runs[0].to_dict()["eval_epochs"] == [6, 8, 10]


def test_diverged_student_is_reported_failed_and_others_train_on(tensors):
    args = StudentTrainingArgs(loss="ce", optimizer="sgd", momentum=0.0, weight_decay=0.0, epochs=3, batch_size=10,
                               eval_every=1)
    runs = train_students(MODEL, KWARGS, *tensors, seeds=[0, 0], learning_rates=[0.05, 1e30], args=args)
    assert runs[0].finite and not runs[0].failed and not math.isnan(runs[0].best_accuracy)
    assert runs[1].failed and math.isnan(runs[1].best_accuracy) and runs[1].to_dict()["failed"]
    # lr 1e30: step 1's loss is finite, the weights it makes are not, so step 2's loss is the first non-finite one
    assert runs[0].diverged_step is None and runs[1].diverged_step == 2
    alone = train_students(MODEL, KWARGS, *tensors, seeds=[0], learning_rates=[1e30], args=args, vectorized=False)
    assert alone[0].failed and alone[0].diverged_step == 2


def test_batch_norm_students_are_refused_under_vmap_and_train_together_in_a_loop(tensors):
    args = StudentTrainingArgs(loss="ce", epochs=2, batch_size=10, augmentation="crop", eval_every=1)
    bn = {"width": 8, "norm": "batchnorm"}
    with pytest.raises(ValueError, match="batch norm.*instancenorm.*forward='loop'.*vectorized=False"):
        train_students(MODEL, bn, *tensors, seeds=[0, 1], learning_rates=[0.1, 0.1], args=args, forward="vmap")
    common = dict(seeds=[0, 1], learning_rates=[0.1, 0.01], args=args, return_models=True)
    together = train_students(MODEL, bn, *tensors, forward="loop", **common)
    separate = train_students(MODEL, bn, *tensors, vectorized=False, **common)
    # by default, batch-norm students train together in the loop (vmap would refuse them)
    assert [r.accuracies for r in train_students(MODEL, bn, *tensors, **common)] == [r.accuracies for r in together]
    for a, b in zip(together, separate):
        # running statistics are each student's own, and evaluation uses them
        for (name, x), y in zip(a.model.named_buffers(), b.model.buffers()):
            torch.testing.assert_close(x, y, atol=1e-5, rtol=0, msg=name)
        assert int(dict(a.model.named_buffers())["timm_model.features.1.num_batches_tracked"]) == 8
        torch.testing.assert_close(_logits(a, tensors[2]), _logits(b, tensors[2]), atol=1e-5, rtol=0)
        assert a.accuracies == pytest.approx(b.accuracies, abs=1 / 120 + 1e-9)


@pytest.mark.parametrize(
    "change, match",
    [
        (dict(learning_rates=[0.1]), "learning_rates: got 1 for 2 seeds"),
        (dict(learning_rates=[0.1, -1.0]), "learning_rates: got -1.0"),
        (dict(seeds=[]), "seeds: got none"),
        (dict(forward="jit"), "forward: got 'jit'"),
    ],
)
def test_bad_students_are_named(tensors, change, match):
    kwargs = dict(seeds=[0, 1], learning_rates=[0.1, 0.1], args=StudentTrainingArgs(loss="ce", epochs=1))
    kwargs.update(change)
    if not kwargs["seeds"]:
        kwargs["learning_rates"] = []
    with pytest.raises(ValueError, match=match):
        train_students(MODEL, KWARGS, *tensors, **kwargs)


@pytest.mark.parametrize(
    "field, value, match",
    [
        ("optimizer", "lion", "optimizer: got 'lion'"),
        ("schedule", "linear", "schedule: got 'linear'"),
        ("epochs", 0, "epochs: got 0"),
        ("augmentation", "blur", "unknown op"),
        ("eval_start_fraction", 1.0, "eval_start_fraction: got 1.0"),
    ],
)
def test_bad_training_args_are_named(field, value, match):
    with pytest.raises(ValueError, match=match):
        StudentTrainingArgs(**{field: value})


def test_soft_label_loss_needs_a_teacher_or_stored_labels(tensors):
    with pytest.raises(ValueError, match="needs soft labels: pass teacher= or soft_labels="):
        train_students(MODEL, KWARGS, *tensors, seeds=[0], learning_rates=[0.1],
                       args=StudentTrainingArgs(loss="kl", epochs=1))


def test_stored_soft_labels_train_like_the_teacher_without_augmentation(tensors, teacher):
    # Without augmentation, logits stored once equal the teacher's online relabelling of each batch.
    with torch.no_grad():
        stored = teacher(pixel_values=tensors[0]).logits
    args = StudentTrainingArgs(loss="soft_ce", optimizer="sgd", epochs=2, batch_size=10, eval_every=1)
    online = train_students(MODEL, KWARGS, *tensors, seeds=[3], learning_rates=[0.05], args=args, teacher=teacher,
                            return_models=True)
    offline = train_students(MODEL, KWARGS, *tensors, seeds=[3], learning_rates=[0.05], args=args,
                             soft_labels=stored, return_models=True)
    torch.testing.assert_close(_logits(online[0], tensors[2]), _logits(offline[0], tensors[2]), atol=1e-5, rtol=0)


def test_learning_rate_schedules_by_hand():
    # step: ×0.1 every 5 epochs of 10 → 1, 0.1 from epoch 5 on
    step = StudentTrainingArgs(schedule="step", epochs=10, step_size=5, gamma=0.1)
    assert [step.lr_factor(e) for e in (0, 4, 5, 9)] == pytest.approx([1, 1, 0.1, 0.1])
    # default step size: half of training
    assert StudentTrainingArgs(schedule="step", epochs=10).lr_factor(5) == pytest.approx(0.1)
    # multistep at 2/3 and 5/6 of 12 epochs (epochs 8 and 10), ×0.2: the GIFT protocol
    multi = StudentTrainingArgs(schedule="multistep", epochs=12, milestones=[2 / 3, 5 / 6], gamma=0.2)
    assert [multi.lr_factor(e) for e in (7, 8, 9, 10, 11)] == pytest.approx([1, 0.2, 0.2, 0.04, 0.04])
    # cosine over 4 epochs: (1 + cos(π·e/4)) / 2
    cosine = StudentTrainingArgs(schedule="cosine", epochs=4)
    assert [cosine.lr_factor(e) for e in range(4)] == pytest.approx([1, 0.8535533906, 0.5, 0.1464466094])
    with pytest.raises(ValueError, match="milestones: got \\[0.8, 0.5\\]"):
        StudentTrainingArgs(schedule="multistep", milestones=[0.8, 0.5])


def test_one_student_equals_gift_trainer_on_full_batches(digits, digits_transform, tensors, teacher, tmp_path):
    # Full batches make the batch order irrelevant (a mean over the same rows), so the
    # Trainer's sampler and ours draw the same batches: then the steps must agree.
    from transformers import set_seed

    from gift_hf import GIFTConfig, GIFTTrainer

    train = digits["train"].select(range(40))
    set_seed(5)  # what evaluation.train_student does before creating a student
    model = create_model(MODEL, 10, in_chans=1, img_size=8, **KWARGS)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    config = GIFTConfig(output_dir=str(tmp_path), loss="kl", temperature=4.0, soft_label_source="teacher",
                        per_device_train_batch_size=40, max_steps=4, max_grad_norm=0.0, save_strategy="no",
                        logging_strategy="no", report_to="none", disable_tqdm=True, use_cpu=True, seed=5)
    GIFTTrainer(model=model, args=config, teacher_model=teacher, train_dataset=train.with_transform(digits_transform),
                optimizers=(optimizer, scheduler)).train()
    args = StudentTrainingArgs(loss="kl", loss_kwargs={"temperature": 4.0}, optimizer="sgd", momentum=0.9,
                               weight_decay=5e-4, schedule="constant", epochs=4, batch_size=40, eval_every=4)
    ours = train_students(MODEL, KWARGS, *tensors, seeds=[5], learning_rates=[0.05], args=args, teacher=teacher,
                          return_models=True)[0]
    for (name, a), b in zip(ours.model.named_parameters(), model.parameters()):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0, msg=name)


# ------------------------------------------------------------------ the shared step pieces
def test_loss_targets_and_per_sample_loss_over_k_students_equal_each_student_alone(teacher):
    from gift_hf import get_loss
    from gift_hf.engine.step import loss_targets, per_sample_loss

    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(3, 4, 1, 8, 8, generator=g), torch.randint(0, 10, (3, 4), generator=g)
    gift = get_loss("gift", temperature=2.0)
    targets = loss_targets(gift, x, teacher=teacher)  # one teacher forward over the 3·4 images
    logits = torch.randn(3, 4, 10, generator=g)
    per = per_sample_loss(gift, logits, targets, y)
    assert per.shape == (3, 4)
    for k in range(3):
        alone = loss_targets(gift, x[k], teacher=teacher)
        torch.testing.assert_close(targets[k], alone, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(per[k], gift(logits[k], alone, y[k], reduction="none"), rtol=1e-5, atol=1e-6)
    # stored probabilities are used as log p: softmax(log p) = p
    p = torch.softmax(torch.randn(3, 4, 10, generator=g), -1)
    as_logits = loss_targets(gift, x, p, soft_label_kind="probabilities")
    torch.testing.assert_close(as_logits.softmax(-1), p)
    assert loss_targets(get_loss("ce"), x, p) is None  # hard labels need no targets
    with pytest.raises(ValueError, match="loss 'gift' needs soft labels"):
        loss_targets(gift, x)
