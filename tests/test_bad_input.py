"""One test per bad input of issue 6 (losses, config, trainer, models, the training recipe).

Each error must name the option or field, the value and what was expected, and nothing
may be half-written. (Dataset-side inputs — IPC larger than a class, corrupt parquet or
image bytes, unsafe tensor files, soft-label columns on save — are tested with the
dataset code.)
"""

import math

import pytest
import torch
from datasets import Dataset, Features, Image, Sequence, Value
from recipe_helpers import load_recipe, one_thread

from gift_hf import GIFTConfig, GIFTTrainer, create_model, get_loss
from gift_hf.engine.trainer import TrainingDivergedError


@pytest.fixture(scope="module")
def recipe():
    return load_recipe()


def nothing_written(path) -> bool:
    """No checkpoint, model or result: the folder is absent or empty."""
    return not path.exists() or not any(path.iterdir())


def rows(digits, n=32, **columns):
    """The first ``n`` digits training rows as a plain dataset, with extra/replaced columns."""
    split = digits["train"].select(range(n))
    data = {"image": split["image"], "label": list(split["label"]), **columns}
    features = {"image": Image(), "label": Value("int64")}
    for name in columns:
        if name == "soft_label":
            features[name] = Sequence(Value("float32"))
        elif name == "label":
            features[name] = Value("int64")
    return Dataset.from_dict(data, features=Features(features))


def train_briefly(tmp_path, dataset, transform, student=None, teacher=None, **config):
    dataset.set_transform(transform)
    config.setdefault("loss", "gift")
    args = GIFTConfig(
        output_dir=str(tmp_path / "out"),
        use_cpu=True,
        max_steps=2,
        per_device_train_batch_size=8,
        save_strategy="no",
        disable_tqdm=True,
        report_to="none",
        **config,
    )
    student = student or create_model("gift_convnet_d3", num_classes=10, in_chans=1, img_size=8)
    if teacher is None and args.soft_label_source == "teacher" and args.loss != "ce":
        teacher = create_model("gift_convnet_d3", num_classes=10, in_chans=1, img_size=8)
    trainer = GIFTTrainer(model=student, args=args, teacher_model=teacher, train_dataset=dataset)
    with one_thread():
        trainer.train()


# ------------------------------------------------------------------------------ config
def test_unknown_loss():
    with pytest.raises(ValueError, match=r"loss: unknown loss 'hinge'; expected one of \['ce', "):
        GIFTConfig(output_dir="unused", loss="hinge")
    with pytest.raises(ValueError, match=r"unknown loss 'hinge'; expected one of"):
        get_loss("hinge")


def test_unknown_optimizer():
    with pytest.raises(ValueError, match=r"optim: unknown optimizer 'adamz'; expected one of \[.*'sgd'"):
        GIFTConfig(output_dir="unused", optim="adamz")


@pytest.mark.parametrize("gamma", [-0.1, math.inf, math.nan])
def test_gamma_out_of_range(gamma):
    with pytest.raises(ValueError, match=rf"gamma: got {gamma}; expected a finite number >= 0"):
        GIFTConfig(output_dir="unused", gamma=gamma)


@pytest.mark.parametrize("smoothing", [-0.1, 1.0, math.nan])
def test_smoothing_out_of_range(smoothing):
    with pytest.raises(ValueError, match=rf"smoothing: got {smoothing}; expected a number in \[0, 1\)"):
        GIFTConfig(output_dir="unused", smoothing=smoothing)
    with pytest.raises(ValueError, match="smoothing must be in"):
        get_loss("gift", smoothing=smoothing)


# ----------------------------------------------------------------------------- trainer
# The data is checked where it is collated: up front when the set is kept on the device, per
# batch on the DataLoader path; either message names the column and the value.
def test_soft_label_width_differs_from_classes(tmp_path, digits, digits_transform):
    dataset = rows(digits, soft_label=[[0.0] * 7] * 32)  # 7 wide, the student has 10 classes
    with pytest.raises(
        ValueError,
        match=r"column 'soft_label' has width 7; expected 10, the number of classes|"
        r"column 'soft_label': got shape \(32, 7\); expected \(32, 10\)",
    ):
        train_briefly(tmp_path, dataset, digits_transform, loss="kl", soft_label_source="dataset")
    assert nothing_written(tmp_path / "out")


def test_labels_out_of_range(tmp_path, digits, digits_transform):
    dataset = rows(digits, label=[12] * 32)
    with pytest.raises(
        ValueError,
        match=r"column 'label': (value 12 is out of range; expected class ids in \[0, 9\]|"
        r"row 0 has label 12; expected a class id in \[0, 9\])",
    ):
        train_briefly(tmp_path, dataset, digits_transform, loss="ce", soft_label_source="none")
    assert nothing_written(tmp_path / "out")


def test_nan_in_teacher_logits(tmp_path, digits, digits_transform):
    teacher = create_model("gift_convnet_d3", num_classes=10, in_chans=1, img_size=8)
    with torch.no_grad():
        teacher.timm_model.head.bias[3] = math.nan
    # Checked on the device without a host sync; the run stops at the next log/save/end, naming the step.
    with pytest.raises(
        TrainingDivergedError,
        match=r"training diverged at step 1: the soft labels \(teacher logits "
        r"or stored soft_label\) and the loss became non-finite",
    ):
        train_briefly(tmp_path, rows(digits), digits_transform, teacher=teacher)
    assert nothing_written(tmp_path / "out")


def test_inf_in_stored_soft_labels(tmp_path, digits, digits_transform):
    soft = [[0.0, 0.0, 0.0, 0.0, math.inf, 0.0, 0.0, 0.0, 0.0, 0.0]] * 32
    dataset = rows(digits, soft_label=soft)
    with pytest.raises(
        ValueError,
        match=r"column 'soft_label', (batch )?row 0: entry 4 is inf; expected finite "
        r"values \(no NaN/inf\)",
    ):
        train_briefly(tmp_path, dataset, digits_transform, loss="kl", soft_label_source="dataset")
    assert nothing_written(tmp_path / "out")


def test_teacher_student_class_count_mismatch(tmp_path):
    student = create_model("gift_convnet_d3", num_classes=10, in_chans=1, img_size=8)
    teacher = create_model("gift_convnet_d3", num_classes=5, in_chans=1, img_size=8)
    args = GIFTConfig(output_dir=str(tmp_path / "out"), use_cpu=True)
    with pytest.raises(ValueError, match="teacher has 5 classes but the student has 10"):
        GIFTTrainer(model=student, args=args, teacher_model=teacher)


def test_image_channels_differ_from_model(tmp_path, digits, digits_transform):
    student = create_model("gift_convnet_d3", num_classes=10, in_chans=3, img_size=8)
    with pytest.raises(ValueError, match=r"pixel_values must have shape \(batch, 3, H, W\).*got \(8, 1, 8, 8\)"):
        train_briefly(tmp_path, rows(digits), digits_transform, student=student, loss="ce", soft_label_source="none")


def test_image_size_differs_from_model(tmp_path, digits, digits_transform):
    # Without the check the ConvNet's linear head fails with a bare matmul shape error.
    student = create_model("gift_convnet_d3", num_classes=10, in_chans=1, img_size=16)
    with pytest.raises(ValueError, match=r"pixel_values: got 8×8 images; this gift_convnet_d3 expects 16×16"):
        train_briefly(tmp_path, rows(digits), digits_transform, student=student, loss="ce", soft_label_source="none")


def test_empty_train_dataset(tmp_path, digits, digits_transform):
    empty = digits["train"].select([])
    args = GIFTConfig(output_dir=str(tmp_path / "out"), use_cpu=True, loss="ce", soft_label_source="none")
    student = create_model("gift_convnet_d3", num_classes=10, in_chans=1, img_size=8)
    with pytest.raises(ValueError, match=r"train_dataset is empty \(0 rows\); expected at least one example"):
        GIFTTrainer(model=student, args=args, train_dataset=empty)
    with pytest.raises(ValueError, match=r"eval_dataset\['val'\] is empty"):
        GIFTTrainer(model=student, args=args, eval_dataset={"val": empty})


# ------------------------------------------------------------------------------ recipe
def test_recipe_empty_split(tmp_path, digits, recipe):
    hub = tmp_path / "hub"
    (hub / "data").mkdir(parents=True)
    digits["train"].select(range(20)).to_parquet(str(hub / "data" / "train-00000-of-00001.parquet"))
    digits["test"].select([]).to_parquet(str(hub / "data" / "test-00000-of-00001.parquet"))
    out = tmp_path / "out"
    with pytest.raises(ValueError, match=r"eval_split: split 'test' of .* is empty \(0 rows\); expected at least one"):
        recipe.main(["--dataset_name", str(hub), "--output_dir", str(out), "--use_cpu"])
    assert nothing_written(out)


@pytest.mark.parametrize(
    "option,value,message",
    [
        (
            "--image_column",
            "img",
            r"image_column: column 'img' is missing from split 'train'; expected one of its "
            r"columns \['image', 'label'\]",
        ),
        ("--label_column", "target", r"label_column: column 'target' is missing from split 'train'"),
        (
            "--soft_label_source",
            "dataset",
            r"soft_label_column: column 'soft_label' \(or its top-k pair "
            r"\['soft_label_topk_values', 'soft_label_topk_indices'\]\) is missing",
        ),
    ],
    ids=["image_column", "label_column", "soft_label_column"],
)
def test_recipe_missing_column(tmp_path, recipe, option, value, message):
    out = tmp_path / "out"
    with pytest.raises(ValueError, match=message):
        recipe.main([option, value, "--output_dir", str(out), "--use_cpu", "--loss", "kl"])
    assert nothing_written(out)


@pytest.mark.parametrize(
    "role,kwargs,message",
    [
        ("student", {"in_chans": 3}, r"student: the model takes 3-channel images but the data gives 1"),
        (
            "teacher",
            {"img_size": 16},
            r"teacher_model_name_or_path: the model takes 16×16 images but the data gives 8×8",
        ),
        (
            "teacher",
            {"num_classes": 5},
            r"teacher_model_name_or_path: the model predicts 5 classes but the data has 10",
        ),
    ],
    ids=["student_channels", "teacher_size", "teacher_classes"],
)
def test_recipe_model_does_not_match_data(tmp_path, recipe, role, kwargs, message):
    saved = tmp_path / role
    model_kwargs = {"num_classes": 10, "in_chans": 1, "img_size": 8, **kwargs}
    create_model("gift_convnet_d3", **model_kwargs).save_pretrained(saved)
    if role == "student":
        # --channels 1 contradicts the saved student (without it, the student's own preprocessing is used)
        args = [
            "--student_model_name_or_path",
            str(saved),
            "--loss",
            "ce",
            "--soft_label_source",
            "none",
            "--channels",
            "1",
        ]
    else:
        args = ["--teacher_model_name_or_path", str(saved), "--loss", "gift"]
    out = tmp_path / "out"
    with pytest.raises(ValueError, match=message):
        recipe.main([*args, "--output_dir", str(out), "--use_cpu"])
    assert nothing_written(out)


def test_recipe_saved_student_brings_its_preprocessing(tmp_path, recipe):
    """Stated once, at create_model: a saved RGB student trains on grayscale digits made RGB, normalised its way."""
    from huggingface_hub import ModelCard

    saved = tmp_path / "student"
    create_model(
        "gift_convnet_d3",
        num_classes=10,
        in_chans=3,
        img_size=8,
        image_mean=(0.1, 0.2, 0.3),
        image_std=(0.4, 0.5, 0.6),
        width=8,
    ).save_pretrained(saved)
    out = tmp_path / "out"
    metrics = recipe.main(
        [
            "--student_model_name_or_path",
            str(saved),
            "--loss",
            "ce",
            "--soft_label_source",
            "none",
            "--max_steps",
            "1",
            "--eval_split",
            "",
            "--output_dir",
            str(out),
            "--use_cpu",
            "--disable_tqdm",
            "true",
            "--save_strategy",
            "no",
        ]
    )
    assert metrics["train_samples"] > 0
    story = ModelCard.load(out / "README.md").data.to_dict()["gift_hf"]
    assert story["input"] == {"in_chans": 3, "img_size": 8, "image_mean": [0.1, 0.2, 0.3], "image_std": [0.4, 0.5, 0.6]}


def test_recipe_refuses_existing_output_dir(tmp_path, recipe):
    out = tmp_path / "out"
    out.mkdir()
    (out / "results.json").write_text("{}")
    args = ["--output_dir", str(out), "--use_cpu", "--loss", "ce", "--soft_label_source", "none"]
    with pytest.raises(
        FileExistsError, match=r"output_dir: .* exists and is not empty; expected a new or empty folder"
    ):
        recipe.main(args)
    assert sorted(p.name for p in out.iterdir()) == ["results.json"]  # untouched

    file_out = tmp_path / "a_file"
    file_out.write_text("")
    with pytest.raises(FileExistsError, match=r"output_dir: .* exists and is a file"):
        recipe.main(["--output_dir", str(file_out), "--use_cpu"])

    # --overwrite_output_dir lets the run write into it.
    with one_thread():
        metrics = recipe.main(
            [
                *args,
                "--overwrite_output_dir",
                "--max_steps",
                "2",
                "--eval_split",
                "",
                "--disable_tqdm",
                "true",
                "--save_strategy",
                "no",
            ]
        )
    assert metrics["world_size"] == 1
    assert (out / "model.safetensors").is_file() and (out / "results.json").is_file()


# ---------------------------------------------------------------------------- paths that do not exist (issue 10)
@pytest.mark.parametrize("name", ["./nope", "/no/such/teacher", "runs/teachers/nope"])
def test_missing_local_teacher_is_not_found_never_a_hub_error(name):
    from gift_hf import load_teacher

    with pytest.raises(FileNotFoundError, match=rf"teacher '{name}' not found: no such local file or directory"):
        load_teacher(name)


def test_missing_student_and_unknown_names_are_not_found(tmp_path):
    from gift_hf import load_teacher

    with pytest.raises(FileNotFoundError, match=r"student '\./runs/student' not found"):
        load_teacher("./runs/student", role="student")
    # no such local folder, no such timm architecture, and the Hub is not reachable (tests run offline)
    with pytest.raises(
        ValueError,
        match=r"teacher 'gift_convnet_d3x' not found: no local directory or timm "
        r"architecture of that name, and the Hub model 'gift_convnet_d3x' could not",
    ):
        load_teacher("gift_convnet_d3x")
    (tmp_path / "model.safetensors").write_bytes(b"")
    with pytest.raises(
        ValueError,
        match=r"teacher '.*model.safetensors' is a file; expected a directory saved with "
        r"save_pretrained",
    ):
        load_teacher(tmp_path / "model.safetensors")
    saved = tmp_path / "teacher"
    create_model("gift_convnet_d3", num_classes=10, in_chans=1, img_size=8).save_pretrained(saved)
    (saved / "model.safetensors").unlink()
    with pytest.raises(ValueError, match=r"teacher directory '.*teacher' cannot be loaded: .*model.safetensors"):
        load_teacher(saved)


def test_recipe_missing_teacher_path_is_not_found(tmp_path, recipe):
    out = tmp_path / "out"
    with pytest.raises(FileNotFoundError, match=r"teacher '\./no_such_teacher' not found"):
        recipe.main(
            [
                "--teacher_model_name_or_path",
                "./no_such_teacher",
                "--loss",
                "gift",
                "--output_dir",
                str(out),
                "--use_cpu",
            ]
        )
    assert nothing_written(out)


def test_recipe_missing_dataset_path_is_not_found_never_a_hub_error(tmp_path, recipe, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "out"
    for name in ("./no_such_set", "runs/sets/no_such_set"):
        with pytest.raises(FileNotFoundError, match=rf"dataset_name '{name}' not found: no such local file"):
            recipe.main(
                [
                    "--dataset_name",
                    name,
                    "--loss",
                    "ce",
                    "--soft_label_source",
                    "none",
                    "--output_dir",
                    str(out),
                    "--use_cpu",
                ]
            )
    with pytest.raises(
        ValueError,
        match=r"dataset_name: 'nobody/nothing' not found: there is no local directory of "
        r"that name, and the Hub dataset 'nobody/nothing' could not be read",
    ):
        recipe.main(
            [
                "--dataset_name",
                "nobody/nothing",
                "--loss",
                "ce",
                "--soft_label_source",
                "none",
                "--output_dir",
                str(out),
                "--use_cpu",
            ]
        )
    assert nothing_written(out)


# ---------------------------------------------------------------------------- data vs teacher (issue 10)
def test_relabel_with_a_teacher_of_other_channels_names_the_column_shape_and_teacher():
    from distilled_helpers import pixel_dataset

    from gift_hf import relabel

    teacher = create_model("gift_convnet_d3", num_classes=3, in_chans=3, img_size=8)
    with pytest.raises(
        ValueError,
        match=r"teacher 1/1 \(TimmWrapperForImageClassification\): cannot take the images of column "
        r"'pixel_values': a batch of shape \(6, 1, 8, 8\) .* expected images the "
        r"teacher accepts \(3 channels, 8×8 pixels\)",
    ):
        relabel(pixel_dataset(n=6, size=8), teacher, progress=False)


def test_selection_with_a_bare_module_teacher_of_other_channels_is_a_clear_error():
    import timm
    from distilled_helpers import rgb_dataset

    from gift_hf import build_difficulty_distilled

    bare = timm.create_model("gift_convnet_d3", num_classes=3, in_chans=1, img_size=8)  # no config to read
    with pytest.raises(
        ValueError,
        match=r"teacher 1/1 \(.*\): cannot take the images of column 'image': a batch of "
        r"shape \(6, 3, 8, 8\)",
    ):
        build_difficulty_distilled(rgb_dataset(n=6, size=8, soft=None), 1, bare, progress=False)


def test_images_of_different_sizes_name_the_row_and_the_fix():
    import numpy as np
    from distilled_helpers import png_bytes

    from gift_hf import ImageTransform, SoftLabelCollator

    images = [{"bytes": png_bytes(np.zeros((s, s), np.uint8)), "path": None} for s in (8, 8, 6)]
    ds = Dataset.from_dict(
        {"image": images, "label": [0, 1, 0]}, features=Features({"image": Image(), "label": Value("int64")})
    )
    ds.set_transform(ImageTransform(channels=1))
    with pytest.raises(
        ValueError,
        match=r"pixel_values: row 2 of the batch has shape \(1, 6, 6\) but row 0 has "
        r"\(1, 8, 8\); .* Resize them with ImageTransform\(image_size=...\)",
    ):
        SoftLabelCollator()([ds[i] for i in range(3)])
    ds.set_transform(ImageTransform(channels=1, image_size=8))  # the fix the message names
    assert SoftLabelCollator()([ds[i] for i in range(3)])["pixel_values"].shape == (3, 1, 8, 8)
