"""Model cards of students: the whole story in the card, written beside every save, pushed with the model."""

import torch
import yaml
from hub_double import RecordingHub
from huggingface_hub import ModelCard
from transformers import AutoModelForImageClassification, TimmWrapperForImageClassification

from gift_hf import GIFTConfig, GIFTTrainer, create_model, image_transform_for, protocol_config
from gift_hf.data.distilled import DistilledInfo
from gift_hf.data.images import DIGITS_MEAN, DIGITS_STD
from gift_hf.evaluation.metrics import build_compute_metrics
from gift_hf.hub.model_card import ModelCardCallback, build_model_card, save_model_card

INFO = DistilledInfo(source_dataset="digits", method="random", ipc=2, seed=0)


def student():
    torch.manual_seed(0)
    return create_model(
        "gift_convnet_d3",
        num_classes=10,
        in_chans=1,
        img_size=8,
        image_mean=DIGITS_MEAN,
        image_std=DIGITS_STD,
        width=8,
        id2label={i: str(i) for i in range(10)},
    )


def metadata(text: str) -> dict:
    assert text.startswith("---\n")
    return yaml.safe_load(text.split("---\n")[1])


def test_card_records_the_whole_story(tmp_path):
    args = GIFTConfig(
        output_dir=str(tmp_path),
        loss="gift",
        gamma=0.2,
        smoothing=0.05,
        seed=3,
        teacher_model_name_or_path="me/digits-teacher",
        augmentation="flip",
    )
    card = build_model_card(
        student(),
        args,
        dataset="me/digits-ipc2",
        distilled_info=INFO,
        dataset_fingerprint="abc123",
        protocol=protocol_config("gift", num_train_epochs=5),
        eval_results={"eval_accuracy": 0.75, "eval_loss": 0.8, "eval_runtime": 1.5, "epoch": 3.0},
        eval_split="test",
        license="bsd-3-clause",
        repo_id="me/student",
        tags=["digits"],
    )
    meta = metadata(str(card))
    assert meta["license"] == "bsd-3-clause" and meta["library_name"] == "transformers"
    assert meta["pipeline_tag"] == "image-classification" and meta["datasets"] == ["me/digits-ipc2"]
    assert {"dataset-distillation", "gift_hf", "gift", "gift_convnet_d3", "digits"} <= set(meta["tags"])
    story = meta["gift_hf"]
    assert story["architecture"] == "gift_convnet_d3" and story["model_kwargs"] == {"width": 8}
    assert story["input"] == {
        "in_chans": 1,
        "img_size": 8,
        "image_mean": [DIGITS_MEAN[0]],
        "image_std": [DIGITS_STD[0]],
    }
    assert (story["dataset"], story["dataset_fingerprint"], story["ipc"]) == ("me/digits-ipc2", "abc123", 2)
    assert story["teacher"] == "me/digits-teacher" and story["seed"] == 3
    assert story["loss"] == "gift" and story["loss_params"] == {"gamma": 0.2, "smoothing": 0.05}
    assert story["protocol"]["name"] == "gift" and story["protocol"]["num_train_epochs"] == 5
    assert story["training"]["augmentation"] == "flip" and story["training"]["soft_label_source"] == "teacher"
    # model-index, as the Hub reads it back
    results = {r.metric_type: r for r in ModelCard(str(card)).data.eval_results}
    assert sorted(results) == ["accuracy", "loss"]  # speed figures are not scores
    accuracy = results["accuracy"]
    assert (accuracy.metric_value, accuracy.dataset_type, accuracy.dataset_split) == (0.75, "digits", "test")
    assert accuracy.task_type == "image-classification"
    assert meta["model-index"][0]["name"] == "student"
    body = str(card).split("---\n", 2)[2]
    assert 'from_pretrained("me/student")' in body and "image_transform_for(model)" in body  # 1 channel
    assert "to_rgb_student(model).save_pretrained" in body  # and the way to a pipeline-ready copy
    # people read accuracies in percent (the metadata keeps the fraction)
    assert "| accuracy | 75.00% | digits (test) |" in body and "| loss | 0.8 | digits (test) |" in body
    assert "trained by gift_hf on the distilled dataset `me/digits-ipc2` (2 images per class)" in body
    # ready to publish: why the eval loss of a cosine-trained student is high, intended use, limitations, BibTeX
    assert "The eval loss is the hard-label cross-entropy; a student trained with `gift`" in body
    assert "## Intended use" in body and "## Limitations" in body and "few images per class" in body
    citation = body.split("## Citation", 1)[1]
    assert "@inproceedings{shang2025gift" in citation and "Shang, Xinyi and Sun, Peng and Lin, Tao" in citation
    assert "ICLR" in citation and "@inproceedings{qin2024label" in citation
    assert "A Label is Worth a Thousand Images in Dataset Distillation" in citation
    assert "rded" not in citation and "sre2l" not in citation  # the set was chosen at random


def test_rgb_students_get_a_pipeline_snippet_and_the_sets_license(tmp_path):
    from gift_hf import build_random_distilled, load_digits_dataset, save_distilled

    subset, info = build_random_distilled(load_digits_dataset(), ipc=1, source_dataset="digits")
    saved = save_distilled(subset, tmp_path / "set", info)
    model = create_model("resnet10t", num_classes=10, in_chans=3, img_size=16)
    card = str(build_model_card(model, dataset=str(saved), distilled_info=info))
    assert metadata(card)["license"] == "bsd-3-clause"  # the distilled set's card's
    assert 'pipeline("image-classification", model="<repo_id or local directory>")' in card
    assert "import gift_hf" not in card  # a stock timm architecture needs no gift_hf
    assert "Not evaluated yet." in card


def train(tmp_path, digits, callbacks=(), teacher=None, **config):
    transform = image_transform_for(student())
    train_set = digits["train"].select(range(16)).with_transform(transform)
    test_set = digits["test"].select(range(16)).with_transform(transform)
    config = {"loss": "ce", "soft_label_source": "none", **config}
    args = GIFTConfig(
        output_dir=str(tmp_path / "run"),
        use_cpu=True,
        max_steps=2,
        per_device_train_batch_size=8,
        disable_tqdm=True,
        report_to="none",
        seed=5,
        **config,
    )
    trainer = GIFTTrainer(
        model=student(),
        args=args,
        teacher_model=teacher,
        train_dataset=train_set,
        eval_dataset=test_set,
        compute_metrics=build_compute_metrics(10),
        callbacks=list(callbacks),
    )
    trainer.train()
    return trainer, train_set


def test_the_callback_writes_a_card_into_every_checkpoint(tmp_path, digits):
    callback = ModelCardCallback(dataset="me/digits-ipc2", distilled_info=INFO, license="bsd-3-clause")
    trainer, train_set = train(
        tmp_path, digits, callbacks=[callback], save_strategy="steps", save_steps=1, eval_strategy="steps", eval_steps=1
    )
    for step in (1, 2):
        meta = metadata((tmp_path / "run" / f"checkpoint-{step}" / "README.md").read_text())
        assert meta["gift_hf"]["dataset_fingerprint"] == train_set._fingerprint
        assert meta["gift_hf"]["loss"] == "ce" and meta["gift_hf"]["seed"] == 5 and meta["license"] == "bsd-3-clause"
        (result,) = meta["model-index"][0]["results"]
        assert [m["type"] for m in result["metrics"]] == ["loss", "accuracy", "top5_accuracy"]
    # after training: the last evaluation goes in the card of the saved model
    metrics = trainer.evaluate()
    trainer.save_model(str(tmp_path / "final"))  # GIFTTrainer writes the card with the model
    card = ModelCard.load(tmp_path / "final" / "README.md")
    results = {r.metric_type: r.metric_value for r in card.data.eval_results}
    assert results["accuracy"] == metrics["eval_accuracy"]
    # the protocol defaults to the run's own settings, named after no preset (loss ce, 2 steps)
    protocol = card.data.to_dict()["gift_hf"]["protocol"]
    assert (protocol["name"], protocol["loss"], protocol["max_steps"]) == ("custom", "ce", 2)


def test_the_protocol_is_named_after_the_preset_it_keeps():
    from gift_hf.engine.config import PROTOCOLS

    story = metadata(str(build_model_card(student(), protocol="label_paper")))["gift_hf"]
    assert story["protocol"] == {
        "name": "label_paper",
        **{k: v for k, v in PROTOCOLS["label_paper"].items() if k != "seed"},
    }
    kept = protocol_config("label_paper", num_train_epochs=7, seed=4)
    assert metadata(str(build_model_card(student(), protocol=kept)))["gift_hf"]["protocol"]["name"] == "label_paper"
    changed = protocol_config("label_paper", learning_rate=0.5)
    assert metadata(str(build_model_card(student(), protocol=changed)))["gift_hf"]["protocol"]["name"] == "custom"
    # per-dataset settings of a protocol (its ImageNet-1K factor crop, a fixed batch size) keep its name
    scaled = protocol_config("gift", factor_crop=2, batch_sizes=None, per_device_train_batch_size=100)
    story = metadata(str(build_model_card(student(), protocol=scaled)))["gift_hf"]
    assert story["protocol"]["name"] == "gift" and "- **Protocol:** `gift`" in str(
        build_model_card(student(), protocol=scaled)
    )


def test_a_teacher_given_as_an_instance_is_named(tmp_path, digits):
    trainer, _ = train(tmp_path, digits, teacher=student(), loss="gift", soft_label_source="teacher")
    story = metadata(save_model_card(trainer, tmp_path / "out").read_text())["gift_hf"]
    assert story["teacher"] == "gift_convnet_d3 (passed as a model instance)" and story["loss"] == "gift"
    trainer.teacher_model.save_pretrained(tmp_path / "teacher")
    loaded, _ = train(tmp_path, digits, teacher=str(tmp_path / "teacher"), loss="kl", soft_label_source="teacher")
    story = metadata(save_model_card(loaded, tmp_path / "out").read_text())["gift_hf"]
    # a local teacher is named by its folder, never by a local (absolute) path
    text = save_model_card(loaded, tmp_path / "out").read_text()
    assert metadata(text)["gift_hf"]["teacher"] == "teacher" and str(tmp_path) not in text
    assert "- **Teacher:** `teacher`" in text


def test_the_readme_flow_card_reads_what_the_trainer_knows(tmp_path, digits):
    """GIFTTrainer(teacher_model=path, eval_dataset=digits test) then save_model: the card names the teacher,
    the evaluation data and split from the dataset's info, and the license from it (scikit-learn's)."""
    teacher = student()
    teacher.save_pretrained(tmp_path / "my-teacher")
    trainer, _ = train(tmp_path, digits, teacher=str(tmp_path / "my-teacher"), loss="gift", soft_label_source="teacher")
    trainer.evaluate()
    trainer.save_model(str(tmp_path / "final"))
    text = (tmp_path / "final" / "README.md").read_text()
    meta = metadata(text)
    assert meta["license"] == "bsd-3-clause" and meta["gift_hf"]["teacher"] == "my-teacher"
    (result,) = meta["model-index"][0]["results"]
    assert result["dataset"] == {"name": "digits", "type": "digits", "split": "test"}
    assert "| digits (test) |" in text and "unknown" not in text and str(tmp_path) not in text
    # no distilled card: "the dataset", not "the distilled dataset"
    assert "distilled dataset" not in text.split("---\n", 2)[2]


def test_a_plain_split_is_the_dataset_and_the_method_is_cited():
    plain = str(build_model_card(student(), dataset="digits"))
    assert "trained by gift_hf on the dataset `digits`" in plain and "**Training dataset:** `digits`" in plain
    rded = str(
        build_model_card(
            student(),
            dataset="me/imagenet-rded-ipc10",
            distilled_info=DistilledInfo(source_dataset="imagenet-1k", method="rded", ipc=10),
        )
    )
    assert "the distilled dataset `me/imagenet-rded-ipc10`" in rded
    assert "@inproceedings{sun2024rded" in rded and "On the Diversity and Realism of Distilled Dataset" in rded
    sre2l = str(build_model_card(student(), distilled_info=DistilledInfo(method="SRe2L", ipc=50)))
    assert "Squeeze, Recover and Relabel" in sre2l and "sun2024rded" not in sre2l
    # a CE-trained student's eval loss needs no note
    ce = str(
        build_model_card(
            student(),
            GIFTConfig(output_dir="x", loss="ce", soft_label_source="none"),
            eval_results={"eval_loss": 0.3, "eval_accuracy": 0.9},
        )
    )
    assert "The eval loss is" not in ce and "| accuracy | 90.00% | unknown |" in ce


def test_push_to_hub_uploads_a_student_anyone_can_load(tmp_path, digits, monkeypatch):
    hub = RecordingHub().install(monkeypatch)
    callback = ModelCardCallback(dataset="me/digits-ipc2", distilled_info=INFO, license="bsd-3-clause")
    trainer, _ = train(
        tmp_path,
        digits,
        callbacks=[callback],
        save_strategy="no",
        push_to_hub=True,
        hub_model_id="me/student",
        hub_token="hf_student_token",
    )
    trainer.evaluate()
    trainer.push_to_hub()
    files = hub.files("me/student")
    assert sorted(files) == ["README.md", "config.json", "model.safetensors", "training_args.bin"]
    assert set(hub.tokens) == {"hf_student_token"}
    assert b"hf_student_token" not in files["training_args.bin"]
    meta = metadata(files["README.md"].decode())
    assert meta["gift_hf"]["dataset"] == "me/digits-ipc2" and meta["model-index"][0]["name"] == "student"
    assert 'from_pretrained("me/student")' in files["README.md"].decode()
    # what was uploaded is a standard transformers checkpoint with its preprocessing
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    for name, data in files.items():
        (mirror / name).write_bytes(data)
    reloaded = AutoModelForImageClassification.from_pretrained(mirror).eval()
    assert isinstance(reloaded, TimmWrapperForImageClassification)
    assert image_transform_for(mirror) == image_transform_for(trainer.model)
    x = torch.randn(2, 1, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(reloaded(pixel_values=x).logits, trainer.model.eval()(pixel_values=x).logits)
