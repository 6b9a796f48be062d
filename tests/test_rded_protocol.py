"""The RDED/SRe2L protocol end to end: the batch-size rule, the epoch evaluations, torchvision
teachers, and `gift-hf evaluate --config recipes/rded/tiny_imagenet.yaml` on ImageNet-shaped data."""

import json
import logging

import numpy as np
import pytest
import torch
import torchvision
from datasets import ClassLabel, Dataset, DatasetDict, Features, Image
from PIL import Image as PILImage
from recipe_helpers import REPO
from safetensors.torch import save_file

from gift_hf import GIFTConfig, cli, save_distilled
from gift_hf.data.images import ImageTransform
from gift_hf.engine.config import protocol_config
from gift_hf.engine.training import train_student
from gift_hf.models.modeling import load_teacher, num_classes_of, teacher_logits


def test_batch_size_rule_by_ipc_and_classes(tmp_path):
    rded = protocol_config("rded", output_dir=str(tmp_path))
    # hand: 10 / 50 / 100 for IPC 1 / 10 / 50 at 10 classes; doubled at 100 and 1,000 classes
    assert [rded.train_batch_size_for(ipc * 10, 10) for ipc in (1, 10, 50)] == [10, 50, 100]
    assert [rded.train_batch_size_for(ipc * 100, 100) for ipc in (1, 10, 50)] == [20, 100, 200]
    assert [rded.train_batch_size_for(ipc * 1000, 1000) for ipc in (1, 10, 50)] == [20, 100, 200]
    assert rded.train_batch_size_for(11 * 10, 10) == 100  # IPC 11 is past the IPC-10 threshold
    with pytest.raises(ValueError, match="batch_size_rule='ipc' needs the number of classes"):
        rded.train_batch_size_for(100)
    assert (rded.eval_every_epochs, rded.eval_start_fraction, rded.eval_transform) == (10, 0.8, "resize_center_crop")


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"batch_size_rule": "classes"}, r"batch_size_rule: got 'classes'; expected one of \('images', 'ipc'\)"),
        ({"eval_every_epochs": -1}, r"eval_every_epochs: got -1; expected an integer >= 0"),
        ({"eval_every_epochs": 10, "best_of": 4}, r"eval_every_epochs: got 10 with best_of=4"),
        ({"eval_start_fraction": 1.0}, r"eval_start_fraction: got 1.0; expected a fraction in \[0, 1\)"),
        ({"eval_transform": "crop"}, r"eval_transform: got 'crop'; expected one of"),
        ({"device_resident": "yes"}, r"device_resident: got 'yes'; expected one of \('auto', 'always', 'never'\)"),
    ],
)
def test_bad_protocol_fields_are_named(tmp_path, changes, message):
    with pytest.raises(ValueError, match=message):
        GIFTConfig(output_dir=str(tmp_path), **changes)


def test_evaluations_every_n_epochs_in_the_last_part(tmp_path, digits, digits_transform, tiny_model):
    train = digits["train"].select(range(8)).with_transform(digits_transform)
    test = digits["test"].select(range(20)).with_transform(digits_transform)
    config = GIFTConfig(
        output_dir=str(tmp_path),
        use_cpu=True,
        loss="ce",
        soft_label_source="none",
        num_train_epochs=10,
        per_device_train_batch_size=8,
        eval_every_epochs=2,
        eval_start_fraction=0.5,
        logging_strategy="no",
        save_strategy="no",
        disable_tqdm=True,
    )
    evaluated = []

    class Steps(__import__("transformers").TrainerCallback):
        def on_evaluate(self, args, state, control, **kwargs):
            evaluated.append(state.global_step)

    result = train_student(config, lambda: tiny_model(width=8), train, test, callbacks=[Steps()], quiet=True)
    # hand: one step per epoch; epochs 2, 4, 6, 8 are multiples of 2, past 0.5 · 10 are 6 and 8; then the final one
    assert evaluated == [6, 8, 10] and len(result.accuracies) == 3
    assert result.accuracy == max(result.accuracies)


# ------------------------------------------------------------------------ torchvision
@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_teacher_from_a_torchvision_state_dict(tmp_path, suffix):
    torch.manual_seed(0)
    net = torchvision.models.resnet18(num_classes=10).eval()
    path = tmp_path / f"resnet18{suffix}"
    state = {k: v.contiguous() for k, v in net.state_dict().items()}
    if suffix == ".pth":
        torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}}, path)  # a DDP training checkpoint
    else:
        save_file(state, str(path))
    teacher = load_teacher(str(path), arch="resnet18")
    assert num_classes_of(teacher) == 10 and not teacher.training
    assert not any(p.requires_grad for p in teacher.parameters())
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(teacher_logits(teacher, x), net(x))
    with pytest.raises(ValueError, match="or for a torchvision state dict its architecture named by arch"):
        load_teacher(str(path))
    with pytest.raises(ValueError, match="does not hold a torchvision resnet34 of 10 classes"):
        load_teacher(str(path), arch="resnet34")


def test_a_pickled_object_is_not_loaded(tmp_path):
    path = tmp_path / "model.pth"
    torch.save({"state_dict": {"w": torch.zeros(2, 2)}, "code": GIFTConfig}, path)  # a class: needs unpickling code
    with pytest.raises(Exception, match="[Ww]eights only load failed"):
        load_teacher(str(path), arch="resnet18")


# --------------------------------------------------------------------- end to end
def image_split(n, classes, size, seed):
    rng = np.random.default_rng(seed)
    images = [
        PILImage.fromarray(rng.integers(0, 256, (size + 8 * (i % 2), size, 3), dtype=np.uint8)) for i in range(n)
    ]  # some not square: the validation resize keeps the aspect ratio
    features = Features({"image": Image(), "label": ClassLabel(names=[f"n{c:08d}" for c in range(classes)])})
    return Dataset.from_dict({"image": images, "label": [i % classes for i in range(n)]}, features=features)


def test_gift_hf_evaluate_with_the_tiny_imagenet_recipe(tmp_path, capsys, caplog):
    """Synthetic Tiny-ImageNet-shaped data (100 classes, 64 px), an IPC-2 distilled set, a
    torchvision teacher checkpoint, through the real command and recipe with overrides."""
    classes, size = 100, 64
    real = tmp_path / "real"
    for split, n, seed in (("train", 100, 1), ("valid", 100, 2)):
        image_split(n, classes, size, seed).to_parquet(str(real / "data" / f"{split}-00000-of-00001.parquet"))
    distilled = image_split(2 * classes, classes, size, 3)
    distilled = distilled.cast_column("image", Image())
    save_distilled(DatasetDict(train=distilled), tmp_path / "set")
    torch.manual_seed(0)
    teacher = tmp_path / "teacher.pth"
    torch.save(torchvision.models.mobilenet_v3_small(num_classes=classes).state_dict(), teacher)

    argv = [
        "evaluate",
        "--config",
        str(REPO / "recipes" / "rded" / "tiny_imagenet.yaml"),
        "--dataset_name",
        str(real),
        "--distilled",
        str(tmp_path / "set"),
        "--teacher_model_name_or_path",
        str(teacher),
        "--teacher_model_init_kwargs",
        json.dumps({"arch": "mobilenet_v3_small"}),
        "--student_arch",
        "gift_convnet_d3",
        "--student_model_kwargs",
        json.dumps({"width": 8}),
        "--num_train_epochs",
        "4",
        "--eval_every_epochs",
        "1",
        "--eval_start_fraction",
        "0.5",
        "--per_device_train_batch_size",
        "50",
        "--per_device_eval_batch_size",
        "50",
        "--num_students",
        "1",
        "--loss",
        "gift",
        "--use_cpu",
        "--output_dir",
        str(tmp_path / "out"),
    ]
    with caplog.at_level(logging.INFO, logger="gift_hf.data.device"):
        assert cli.main(argv) == 0
    assert "cells: 1 (1 trained now" in capsys.readouterr().out
    cell = json.loads((tmp_path / "out" / "results.json").read_text())["cells"][0]
    # 4 epochs of 4 steps: evaluated after epoch 3 (past half of 4, every epoch), then at the end
    assert cell["steps"] == 16 and cell["batch_size"] == 50 and len(cell["accuracies"]) == 2
    assert cell["accuracy"] == max(cell["accuracies"])
    settings = json.loads((tmp_path / "out" / "results.json").read_text())["settings"]["config"]
    assert (settings["loss"], settings["augmentation"], settings["mix"]) == (
        "gift",
        "patchshuffle_resizedcrop_flip",
        "cutmix",
    )
    # both sets were gathered on the device: 200 training images, 100 validation images (resized, centre-cropped)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("device-resident")]
    assert any(line.startswith("device-resident: 200 images") for line in lines)
    assert any(line.startswith("device-resident: 100 images") for line in lines)


def test_validation_split_decodes_with_the_resize_center_crop(tmp_path):
    from gift_hf.data.device import DeviceImageSet
    from gift_hf.data.images import eval_transform_for

    split = image_split(4, 2, 64, 0)
    transform = eval_transform_for(ImageTransform(image_size=64, channels=3), "resize_center_crop")
    data = DeviceImageSet.from_dataset(split, transform, "cpu")
    # hand: a 72×64 image (H×W) is resized to 81×72 (shorter side 72 = 64 // 7 * 8), then its centre 64×64 cut
    image = split[1]["image"].resize((72, 81), PILImage.BILINEAR)
    top, left = round((81 - 64) / 2), round((72 - 64) / 2)
    expected = np.asarray(image.crop((left, top, left + 64, top + 64)), dtype=np.float32) / 255
    got = data.batch(torch.tensor([1]))["pixel_values"][0].permute(1, 2, 0).numpy() * 0.5 + 0.5
    assert data.pixel_values.shape == (4, 3, 64, 64) and np.allclose(got, expected, atol=1e-6)


def test_the_commands_of_the_imagenet_page_parse_with_the_real_scripts():
    """Every `gift-hf …` command of docs/imagenet.md is accepted by its script's parser."""
    import importlib
    import re
    import shlex

    text = (REPO / "docs" / "imagenet.md").read_text()
    blocks = re.findall(r"```bash\n(.*?)```", text, flags=re.S)
    commands = [c for block in blocks for c in block.replace("\\\n", " ").splitlines() if c.startswith("gift-hf ")]
    assert len(commands) >= 5
    parsed = []
    for command in commands:
        name, *argv = shlex.split(command.split("#")[0])[1:]
        script = importlib.import_module(f"gift_hf.scripts.{cli.COMMANDS[name][0]}")
        parsed.append((name, script.make_parser().parse_args_and_config(argv)))
    losses = {config.loss for name, (*_, config) in parsed if name == "evaluate"}
    assert losses == {"kl", "gift"}
    for name, values in parsed:
        if name == "evaluate":
            config = values[-1]
            assert (config.eval_every_epochs, config.eval_transform, config.num_train_epochs) == (
                10,
                "resize_center_crop",
                300,
            )
