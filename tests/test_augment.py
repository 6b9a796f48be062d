"""Batch augmentation: DSA ops, CutMix/MixUp label mixing, ZCA, seeding, checkpointed state."""

import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from transformers import AutoModelForImageClassification

from gift_hf import GIFTConfig, GIFTTrainer, get_loss
from gift_hf.data.augment import (
    DSA_OPS,
    ZCA,
    ZCA_FILE,
    BatchAugmenter,
    batch_seed,
    build_augmenter,
    fit_zca,
    parse_strategy,
)
from gift_hf.engine.losses import smooth_labels

FULL = "color_crop_cutout_flip_scale_rotate"


def randn(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def config(tmp_path, name="run", **kwargs):
    base = dict(
        output_dir=str(tmp_path / name),
        use_cpu=True,
        per_device_train_batch_size=8,
        max_steps=1,
        learning_rate=1e-2,
        save_strategy="no",
        logging_strategy="no",
        disable_tqdm=True,
        seed=0,
    )
    base.update(kwargs)
    return GIFTConfig(**base)


def record_inputs(module, store):
    """Forward hook keeping a copy of every `pixel_values` the module is called on."""

    def hook(_module, args, kwargs, _output):
        store.append((kwargs["pixel_values"] if "pixel_values" in kwargs else args[0]).detach().clone())

    return module.register_forward_hook(hook, with_kwargs=True)


def pixels(dataset):
    return torch.stack([dataset[i]["pixel_values"] for i in range(len(dataset))])


# ------------------------------------------------------------------------ strategy + config
def test_parse_strategy_and_defaults(tmp_path):
    assert parse_strategy(FULL) == list(DSA_OPS)
    assert parse_strategy("flip_crop") == ["flip", "crop"]
    assert parse_strategy("none") == [] and parse_strategy("") == []
    args = config(tmp_path)
    assert (args.augmentation, args.augmentation_mode, args.mix, args.mix_prob, args.mix_beta) == (
        "none",
        "single",
        "none",
        1.0,
        1.0,
    )
    assert (args.zca, args.zca_epsilon, args.zca_path) == (False, 0.1, None)
    assert build_augmenter(args, num_classes=10) is None


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        ({"augmentation": "color_blur"}, "unknown op(s) ['blur']"),
        ({"augmentation": "flip_flip"}, "repeated"),
        ({"augmentation_mode": "some"}, "'some'"),
        ({"mix": "cut"}, "'cut'"),
        ({"mix_prob": 1.5}, "1.5"),
        ({"mix_beta": 0.0}, "0.0"),
        ({"zca_epsilon": -1.0}, "-1.0"),
        ({"zca_path": "somewhere"}, "zca is False"),
    ],
)
def test_config_rejects_bad_augmentation_fields(tmp_path, kwargs, fragment):
    field = next(iter(kwargs))
    with pytest.raises(ValueError) as err:
        GIFTConfig(output_dir=str(tmp_path), **kwargs)
    message = str(err.value)
    assert message.startswith(f"{field}:") and fragment in message
    if field == "augmentation" and "unknown" in message:
        assert all(op in message for op in DSA_OPS)  # the valid ops are listed


# ------------------------------------------------------------------------------- DSA ops
@pytest.mark.parametrize("op", DSA_OPS)
def test_each_dsa_op_keeps_shape_dtype_device_and_changes_the_batch(op):
    x, labels, soft = randn(8, 3, 16, 16), torch.arange(8) % 10, randn(8, 10, seed=1)
    out, out_labels, out_soft = BatchAugmenter([op], mode="all", seed=0)(x, labels, soft)
    assert out.shape == x.shape and out.dtype == x.dtype and out.device == x.device
    assert not torch.equal(out, x)
    assert out_labels is labels and out_soft is soft  # DSA never touches the labels


@pytest.mark.parametrize("mix", ["mixup", "cutmix", "both"])
def test_each_mix_keeps_shape_dtype_device_and_changes_the_batch(mix):
    x, labels = randn(8, 3, 16, 16), torch.arange(8) % 10
    out, mixed, _ = BatchAugmenter(mix=mix, num_classes=10, seed=0)(x, labels)
    assert out.shape == x.shape and out.dtype == x.dtype and out.device == x.device
    assert not torch.equal(out, x)
    assert mixed.shape == (8, 10) and torch.allclose(mixed.sum(-1), torch.ones(8))


def test_half_precision_batch_keeps_its_dtype():
    x = randn(8, 3, 16, 16).bfloat16()
    out, _, _ = BatchAugmenter(DSA_OPS, mode="all", mix="cutmix", num_classes=10, seed=0)(x, torch.arange(8))
    assert out.dtype == torch.bfloat16 and out.shape == x.shape and torch.isfinite(out.float()).all()


def test_flip_against_hand_computation():
    x = torch.arange(8 * 2 * 3, dtype=torch.float32).view(8, 1, 2, 3)
    # hand: a horizontal flip of image 0 [[0, 1, 2], [3, 4, 5]] is [[2, 1, 0], [5, 4, 3]]
    hand_flip = [torch.tensor([[2.0, 1, 0], [5, 4, 3]]).view(1, 2, 3) + 6 * i for i in range(8)]
    out = BatchAugmenter(["flip"], mode="all", seed=0)(x)[0]
    flipped = [torch.equal(out[i], hand_flip[i]) for i in range(8)]
    kept = [torch.equal(out[i], x[i]) for i in range(8)]
    assert all(f != k for f, k in zip(flipped, kept))  # each image is either flipped or left as is
    assert any(flipped) and any(kept)  # p = 0.5 per image


def translate(image, dy, dx):
    """Hand computation: out[r, c] = image[r - dy, c - dx], zero where that falls outside."""
    out = torch.zeros_like(image)
    height, width = image.shape[-2:]
    for r in range(height):
        for c in range(width):
            if 0 <= r - dy < height and 0 <= c - dx < width:
                out[..., r, c] = image[..., r - dy, c - dx]
    return out


def test_crop_against_hand_computation():
    # 8x8 images: the reference shift is round(0.125 * 8) = 1 pixel per axis, zero fill.
    x = torch.arange(1, 16 * 64 + 1, dtype=torch.float32).view(16, 1, 8, 8)
    assert torch.equal(translate(x[0], 1, 0)[0, 0], torch.zeros(8))  # shifted down: first row is fill
    assert torch.equal(translate(x[0], 1, 0)[0, 1], x[0, 0, 0])
    out = BatchAugmenter(["crop"], mode="all", seed=0)(x)[0]
    shifts = []
    for i in range(16):
        matches = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if torch.equal(out[i], translate(x[i], dy, dx))]
        assert len(matches) == 1, f"image {i} is no zero-filled translation within ±1 pixel"
        shifts += matches
    assert len(set(shifts)) > 2


def test_cutout_against_the_reference_box():
    # 8x8 images: a round(0.5 * 8) = 4 pixel square centred uniformly, clipped at the border.
    x = torch.arange(1, 48 * 64 + 1, dtype=torch.float32).view(48, 1, 8, 8)
    out = BatchAugmenter(["cutout"], mode="all", seed=0)(x)[0]
    sizes = set()
    for i in range(48):
        erased = out[i, 0] == 0
        rows, cols = erased.any(1).nonzero().flatten(), erased.any(0).nonzero().flatten()
        r0, r1, c0, c1 = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
        assert erased[r0:r1, c0:c1].all() and erased.sum() == (r1 - r0) * (c1 - c0)  # one rectangle
        assert torch.equal(out[i, 0][~erased], x[i, 0][~erased])  # everything else untouched
        height, width = int(r1 - r0), int(c1 - c0)
        assert 2 <= height <= 4 and 2 <= width <= 4
        if 0 < r0 and r1 < 8:
            assert height == 4  # not clipped at the top or bottom border
        sizes.add((height, width))
    assert (4, 4) in sizes and len(sizes) > 1  # full boxes and border-clipped ones


def test_color_against_hand_computation():
    x = randn(4, 3, 5, 5)
    out = BatchAugmenter(["color"], mode="all", seed=3)(x)[0]
    # the first batch of step 0 draws from a generator seeded with batch_seed(seed, rank, step, call)
    u = torch.rand(3, 4, 1, 1, 1, generator=torch.Generator().manual_seed(batch_seed(3, 0, 0, 0)))
    y = x + (u[0] - 0.5) * 1.0  # brightness
    m = y.mean(1, keepdim=True)
    y = (y - m) * (u[1] * 2.0) + m  # saturation
    m = y.mean((1, 2, 3), keepdim=True)
    y = (y - m) * (u[2] + 0.5) + m  # contrast
    assert torch.allclose(out, y, atol=1e-6)


def test_single_mode_applies_one_op_per_batch():
    x = torch.arange(1, 16 * 64 + 1, dtype=torch.float32).view(16, 1, 8, 8)
    aug = BatchAugmenter(["flip", "cutout"], mode="single", seed=0)
    seen = set()
    for _ in range(12):
        out = aug(x)[0]
        only_flips = all(torch.equal(out[i], x[i]) or torch.equal(out[i], x[i].flip(-1)) for i in range(16))
        only_cutout = all(torch.equal(out[i][out[i] != 0], x[i][out[i] != 0]) for i in range(16)) and bool(
            (out == 0).any()
        )
        assert only_flips != only_cutout
        seen.add("flip" if only_flips else "cutout")
    assert seen == {"flip", "cutout"}


# ----------------------------------------------------------------------------- mixing
def test_mixup_labels_against_hand_computation():
    b, c = 6, 5
    x = torch.arange(b, dtype=torch.float32).view(b, 1, 1, 1).expand(b, 1, 4, 4).contiguous()
    labels = torch.tensor([0, 1, 2, 3, 4, 0])
    soft_logits = randn(b, c, seed=1)
    out, mixed, mixed_soft = BatchAugmenter(mix="mixup", num_classes=c, seed=0)(x, labels, soft_logits)
    one_hot = F.one_hot(labels, c).float()
    lams = []
    for i in range(b):
        j = b - 1 - i  # timm pairs image i with image B-1-i
        value = out[i, 0, 0, 0]
        assert (out[i] == value).all()  # λ·x_i + (1-λ)·x_j of constant images is constant
        lam = float((value - j) / (i - j))
        lams.append(lam)
        assert torch.allclose(mixed[i], lam * one_hot[i] + (1 - lam) * one_hot[j], atol=1e-6)
        assert torch.allclose(mixed_soft[i], lam * soft_logits[i] + (1 - lam) * soft_logits[j], atol=1e-6)
        # GIFT refines after mixing; smoothing is linear, so it equals mixing the smoothed labels
        smoothed_mix = lam * smooth_labels(labels[i : i + 1], c) + (1 - lam) * smooth_labels(labels[j : j + 1], c)
        assert torch.allclose(smooth_labels(mixed[i : i + 1], c), smoothed_mix, atol=1e-6)
    assert np.allclose(lams, lams[0]) and 0 < lams[0] < 1  # one λ per batch
    loss = get_loss("gift")(randn(b, c, seed=2), mixed_soft, mixed)
    assert torch.isfinite(loss)
    # stored probabilities are mixed as probabilities and stay distributions
    probs = soft_logits.softmax(-1)
    _, _, mixed_probs = BatchAugmenter(mix="mixup", num_classes=c, seed=0)(x, labels, probs)
    assert torch.allclose(mixed_probs.sum(-1), torch.ones(b), atol=1e-6)


def test_cutmix_labels_against_hand_computation_and_odd_batches():
    b, c = 7, 4  # odd: the last image has no partner and stays unmixed
    x = torch.arange(1, b + 1, dtype=torch.float32).view(b, 1, 1, 1).expand(b, 1, 8, 8).contiguous()
    labels = torch.tensor([0, 1, 2, 3, 0, 1, 2])
    soft = randn(b, c, seed=1)
    out, mixed, mixed_soft = BatchAugmenter(mix="cutmix", num_classes=c, seed=1)(x, labels, soft)
    one_hot = F.one_hot(labels, c).float()
    n = b - 1
    boxes = []
    for i in range(n):
        j = n - 1 - i
        pasted = out[i, 0] == j + 1
        assert ((out[i, 0] == i + 1) | pasted).all()  # every pixel comes from image i or its partner
        lam = 1 - pasted.float().mean().item()  # λ = the area kept from image i
        assert 0 < lam < 1
        assert torch.allclose(mixed[i], lam * one_hot[i] + (1 - lam) * one_hot[j], atol=1e-6)
        assert torch.allclose(mixed_soft[i], lam * soft[i] + (1 - lam) * soft[j], atol=1e-6)
        boxes.append(pasted)
    assert all(torch.equal(box, boxes[0]) for box in boxes)  # one box per batch
    assert torch.equal(out[n], x[n]) and torch.equal(mixed[n], one_hot[n]) and torch.equal(mixed_soft[n], soft[n])


def test_mix_prob_zero_leaves_batch_and_labels_alone():
    x, labels = randn(8, 3, 8, 8), torch.arange(8)
    out, out_labels, _ = BatchAugmenter(mix="both", mix_prob=0.0, num_classes=10, seed=0)(x, labels)
    assert torch.equal(out, x) and out_labels is labels


# ------------------------------------------------------------------ seeding and state
def test_seed_reproducibility_rank_offset_and_no_global_rng_leak(tmp_path):
    args = config(tmp_path, augmentation=FULL, mix="both", seed=7)
    x, labels = randn(8, 3, 16, 16), torch.arange(8) % 10
    rank0, again, explicit0, rank1 = (
        build_augmenter(args, 10),
        build_augmenter(args, 10),
        build_augmenter(args, 10, rank=0),
        build_augmenter(args, 10, rank=1),
    )
    torch_state, numpy_state = torch.get_rng_state(), np.random.get_state()
    for _ in range(3):
        a, b, c, d = (aug(x, labels) for aug in (rank0, again, explicit0, rank1))
        assert torch.equal(a[0], b[0]) and torch.equal(a[0], c[0]) and torch.equal(a[1], b[1])
        assert not torch.equal(a[0], d[0])  # each rank draws its own parameters
    assert torch.equal(torch.get_rng_state(), torch_state)  # the Trainer's RNG streams are untouched
    assert all(np.array_equal(s, t) for s, t in zip(np.random.get_state(), numpy_state))
    other_seed = build_augmenter(config(tmp_path, augmentation=FULL, mix="both", seed=8), 10)
    assert not torch.equal(other_seed(x, labels)[0], build_augmenter(args, 10)(x, labels)[0])


def test_draws_depend_only_on_seed_rank_step_and_call(tmp_path):
    """What a batch draws is fixed by (seed, rank, step, call in the step): nothing to checkpoint."""
    x, labels = randn(8, 3, 16, 16), torch.arange(8) % 10
    long_run = BatchAugmenter(DSA_OPS, mix="cutmix", num_classes=10, seed=0)
    for step in range(3):
        long_run.set_step(step)
        long_run(x, labels)
    long_run.set_step(5)
    first, second = long_run(x, labels), long_run(x, labels)
    fresh = BatchAugmenter(DSA_OPS, mix="cutmix", num_classes=10, seed=0)
    fresh.set_step(5)
    again = fresh(x, labels), fresh(x, labels)
    for want, got in zip((first, second), again):
        assert torch.equal(want[0], got[0]) and torch.equal(want[1], got[1])
    assert not torch.equal(first[0], second[0])  # micro-batches of one step draw differently
    fresh.set_step(6)
    assert not torch.equal(fresh(x, labels)[0], first[0])  # ... and so do steps


# ------------------------------------------------------------------------------- trainer
def test_teacher_labels_the_augmented_mixed_batch(tmp_path, digits, digits_transform, tiny_model):
    train = digits["train"].select(range(8)).with_transform(digits_transform)
    teacher, student = tiny_model(), tiny_model()
    teacher_inputs, student_inputs = [], []
    record_inputs(teacher, teacher_inputs)
    record_inputs(student, student_inputs)
    args = config(tmp_path, loss="gift", augmentation=FULL, augmentation_mode="all", mix="cutmix")
    GIFTTrainer(model=student, args=args, teacher_model=teacher, train_dataset=train).train()
    assert len(teacher_inputs) == 1 and len(student_inputs) == 1
    assert torch.equal(teacher_inputs[0], student_inputs[0])  # the teacher saw what the student saw
    raw = pixels(train)
    assert teacher_inputs[0].shape == raw.shape
    assert not any(torch.equal(row, image) for row in teacher_inputs[0] for image in raw)  # ... augmented


def test_resume_restores_the_augmenter_state(tmp_path, digits, digits_transform, tiny_model):
    train = digits["train"].select(range(16)).with_transform(digits_transform)
    common = dict(
        loss="ce",
        soft_label_source="none",
        augmentation=FULL,
        mix="both",
        max_steps=4,
        save_strategy="steps",
        save_steps=2,
    )

    def run(name, resume=None, step_callback=True):
        torch.manual_seed(0)
        trainer = GIFTTrainer(model=tiny_model(), args=config(tmp_path, name, **common), train_dataset=train)
        if not step_callback:  # the control: the augmenter is never told the step
            trainer.remove_callback(trainer.monitor)
        trainer.train(resume_from_checkpoint=resume)
        return {k: v.clone() for k, v in trainer.model.state_dict().items()}

    uninterrupted = run("a")
    checkpoint = tmp_path / "a" / "checkpoint-2"
    resumed = run("b", resume=str(checkpoint))
    assert all(torch.equal(uninterrupted[k], resumed[k]) for k in uninterrupted)
    diverged = run("c", resume=str(checkpoint), step_callback=False)
    assert any(not torch.equal(uninterrupted[k], diverged[k]) for k in uninterrupted)


# ---------------------------------------------------------------------------------- ZCA
def test_zca_matches_hand_computation_and_round_trips(tmp_path):
    scale = torch.linspace(0.5, 3.0, 18).view(1, 2, 3, 3)
    images = randn(64, 2, 3, 3) * scale + 1.0
    zca = fit_zca(images, epsilon=0.1)
    flat = images.reshape(64, -1).double()
    centred = flat - flat.mean(0)
    eigenvalues, vectors = torch.linalg.eigh(centred.T @ centred / 63)
    whiten = vectors @ torch.diag((eigenvalues + 0.1).rsqrt()) @ vectors.T
    assert torch.allclose(zca(images), (centred @ whiten).reshape_as(images).float(), atol=1e-5)
    white = fit_zca(images, epsilon=1e-6)(images).reshape(64, -1).double()
    assert torch.allclose(torch.cov(white.T), torch.eye(18, dtype=torch.float64), atol=1e-3)
    path = zca.save(str(tmp_path))
    assert os.path.basename(path) == ZCA_FILE
    x = randn(5, 2, 3, 3, seed=1)
    for loaded in (ZCA.load(str(tmp_path)), ZCA.load(path)):
        assert loaded.epsilon == 0.1 and loaded.image_shape == (2, 3, 3)
        assert torch.equal(loaded(x), zca(x))
    with pytest.raises(FileNotFoundError, match="zca_path"):
        ZCA.load(str(tmp_path / "missing"))
    with pytest.raises(ValueError, match=r"\(2, 3, 3\)"):
        zca(randn(5, 1, 3, 3))
    with pytest.raises(RuntimeError, match="not fitted"):
        ZCA()(x)
    with pytest.raises(ValueError, match="zca_epsilon"):
        ZCA(epsilon=0.0)


def test_zca_whitens_teacher_student_and_eval_batches_and_reloads(tmp_path, digits, digits_transform, tiny_model):
    train = digits["train"].select(range(32)).with_transform(digits_transform)
    test = digits["test"].select(range(16)).with_transform(digits_transform)
    teacher, student = tiny_model(), tiny_model()
    teacher_inputs, student_inputs = [], []
    record_inputs(teacher, teacher_inputs)
    record_inputs(student, student_inputs)
    args = config(tmp_path, loss="gift", zca=True, per_device_train_batch_size=32, per_device_eval_batch_size=16)
    trainer = GIFTTrainer(model=student, args=args, teacher_model=teacher, train_dataset=train, eval_dataset=test)
    raw_train, raw_test = pixels(train), pixels(test)
    reference = fit_zca(raw_train, epsilon=0.1)  # fitted on the training images
    assert torch.allclose(trainer.zca.transform_matrix, reference.transform_matrix, atol=1e-6)
    trainer.train()
    whitened = reference(raw_train)
    assert torch.equal(teacher_inputs[0], student_inputs[0])
    assert all(any(torch.allclose(row, w, atol=1e-5) for w in whitened) for row in teacher_inputs[0])
    trainer.save_model()
    assert (tmp_path / "run" / ZCA_FILE).is_file()
    metrics = trainer.evaluate()
    assert torch.allclose(student_inputs[-1], reference(raw_test), atol=1e-5)  # eval batches are whitened
    # a fresh trainer on the saved run (no training set to fit on) evaluates identically
    eval_inputs = []
    reloaded = AutoModelForImageClassification.from_pretrained(str(tmp_path / "run"))
    record_inputs(reloaded, eval_inputs)
    eval_args = config(
        tmp_path,
        "eval",
        loss="ce",
        soft_label_source="none",
        zca=True,
        zca_path=str(tmp_path / "run"),
        per_device_eval_batch_size=16,
    )
    again = GIFTTrainer(model=reloaded, args=eval_args, eval_dataset=test).evaluate()
    assert torch.equal(eval_inputs[0], student_inputs[-1])
    assert again["eval_loss"] == pytest.approx(metrics["eval_loss"], rel=1e-6)
    assert not torch.allclose(eval_inputs[0], raw_test, atol=1e-2)  # whitening did change the inputs


# ------------------------------------------------------------------- many batches at once
@pytest.mark.parametrize(
    "kwargs",
    [
        dict(ops=FULL, mode="single", mix="both", mix_prob=0.5),  # several op groups, some batches unmixed
        dict(ops=FULL, mode="all", mix="mixup"),
        dict(ops="patchshuffle_resizedcrop_flip", mode="all", mix="cutmix"),
        dict(ops=FULL, mode="single"),  # no mixing: labels stay class ids
    ],
)
def test_augment_stacked_equals_each_augmenter_on_its_own_batch(kwargs):
    from gift_hf.data.augment import augment_stacked

    k, b = 6, 9  # an odd batch: its last image is never mixed
    x, labels, soft = randn(k, b, 3, 16, 16), torch.arange(k * b).view(k, b) % 10, randn(k, b, 10, seed=1)
    separate = [BatchAugmenter(num_classes=10, seed=s, **kwargs) for s in range(k)]
    together = [BatchAugmenter(num_classes=10, seed=s, **kwargs) for s in range(k)]
    together[2] = None  # a student without augmentation keeps its batch
    for step in range(4):
        for a in separate + together:
            if a is not None:
                a.set_step(step)
        out, out_labels, out_soft = augment_stacked(together, x, labels, soft)
        expected = [
            separate[i](x[i], labels[i], soft[i]) if together[i] is not None else (x[i], labels[i], soft[i])
            for i in range(k)
        ]
        mixed = any(e[1].dim() == 2 for e in expected)
        for i, (ex, ey, es) in enumerate(expected):
            torch.testing.assert_close(out[i], ex, rtol=1e-6, atol=1e-6)
            torch.testing.assert_close(out_soft[i], es, rtol=1e-6, atol=1e-6)
            if mixed:  # every batch's labels become distributions; unmixed ones are one-hot
                dense = ey if ey.dim() == 2 else F.one_hot(ey, 10).float()
                torch.testing.assert_close(out_labels[i], dense, rtol=1e-6, atol=1e-6)
            else:
                assert torch.equal(out_labels[i], ey)
    if kwargs["mode"] == "single":
        # the augmenters drew different ops in one step: several groups were applied together
        draws = [BatchAugmenter(seed=s, **{**kwargs, "mix": "none"}).sample((b, 3, 16, 16)).ops for s in range(k)]
        assert len(set(draws)) > 1


def test_sample_then_apply_is_a_call():
    x, labels = randn(8, 3, 16, 16), torch.arange(8) % 10
    a = BatchAugmenter(FULL, mode="all", mix="both", num_classes=10, seed=3)
    b = BatchAugmenter(FULL, mode="all", mix="both", num_classes=10, seed=3)
    for _ in range(3):
        draw = b.sample(x.shape, x.device)
        assert draw.ops == tuple(FULL.split("_")) and all(p.shape[0] == 8 for d in draw.params for p in d.values())
        expected, expected_labels, _ = a(x, labels)
        out, out_labels, _ = b.apply(x, draw, labels)
        assert torch.equal(out, expected) and torch.equal(out_labels, expected_labels)
    assert a.state_dict()["calls"].item() == b.state_dict()["calls"].item() == 3


def test_augment_stacked_makes_no_host_reads(monkeypatch):
    from host_reads import count_host_reads

    from gift_hf.data.augment import augment_stacked

    x, labels, soft = randn(5, 8, 3, 16, 16), torch.arange(40).view(5, 8) % 10, randn(5, 8, 10, seed=1)
    augmenters = [
        BatchAugmenter(FULL, mode="single", mix="both", mix_prob=0.5, num_classes=10, seed=s) for s in range(5)
    ]
    reads = count_host_reads(monkeypatch)
    for step in range(6):
        for a in augmenters:
            a.set_step(step)
        augment_stacked(augmenters, x, labels, soft)
    assert sum(reads.values()) == 0, reads


def test_augment_stacked_bad_input_is_named():
    from gift_hf.data.augment import augment_stacked

    with pytest.raises(ValueError, match=r"images: got shape \(8, 3, 16, 16\); expected \(K, B, C, H, W\)"):
        augment_stacked([None], randn(8, 3, 16, 16))
    with pytest.raises(ValueError, match="augmenters: got 1 for 2 batches"):
        augment_stacked([BatchAugmenter(FULL)], randn(2, 4, 3, 16, 16))
