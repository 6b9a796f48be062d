"""GIFTTrainer trains from soft labels stored in a distilled dataset (dense or sparse top-k), no teacher."""

import pytest
import torch
import torch.nn.functional as F
from distilled_helpers import digits_teacher

from gift_hf import (
    GIFTConfig,
    GIFTTrainer,
    build_random_distilled,
    get_loss,
    keep_topk,
    load_distilled,
    relabel,
    save_distilled,
)


def gift_by_hand(z, t, y, num_classes, gamma=0.1, alpha=0.1):
    """GIFT (Shang et al., ICLR 2025): r = normalize(t) + γ·normalize(smoothed one-hot); loss = 1 − mean cos(z, r)."""
    s = torch.full((len(y), num_classes), alpha / (num_classes - 1))
    s[torch.arange(len(y)), y] = 1 - alpha
    r = t / t.norm(dim=1, keepdim=True) + gamma * s / s.norm(dim=1, keepdim=True)
    cos = (z * r).sum(1) / (z.norm(dim=1) * r.norm(dim=1))
    return 1 - cos.mean()


@pytest.fixture(scope="module")
def stored(digits, tmp_path_factory):
    """A random IPC-2 digits subset relabelled by a teacher, saved dense and top-3 in the Hub layout."""
    root = tmp_path_factory.mktemp("stored")
    subset, info = build_random_distilled(digits, ipc=2, seed=0, source_dataset="digits")
    teacher = digits_teacher(seed=5)
    dense, dense_info = relabel(subset, teacher, info=info, temperature=4.0, progress=False)
    sparse, sparse_info = relabel(subset, teacher, info=info, temperature=4.0, topk=3, progress=False)
    dirs = {
        "dense": save_distilled(dense, root / "dense", dense_info),
        "topk": save_distilled(sparse, root / "topk", sparse_info),
    }
    return root, dirs, torch.tensor(dense["soft_label"])


def trainer_for(root, path, digits_transform, tiny_model, **overrides):
    ds, info = load_distilled(path, cache_dir=str(root / "cache"))
    train = ds["train"].with_transform(digits_transform)
    options = dict(
        output_dir=str(root / "run"),
        loss="gift",
        use_cpu=True,
        per_device_train_batch_size=10,
        max_steps=4,
        learning_rate=1e-2,
        save_strategy="no",
        logging_strategy="no",
        disable_tqdm=True,
        seed=0,
        **info.training_kwargs(),
    )
    args = GIFTConfig(**{**options, **overrides})
    torch.manual_seed(0)
    student = tiny_model()
    return GIFTTrainer(model=student, args=args, train_dataset=train), train, info


def check_loss_and_training(trainer, train, expected_soft):
    assert trainer.teacher_model is None  # the stored labels replace the teacher
    batch = trainer.data_collator([train[i] for i in range(10)])
    torch.testing.assert_close(batch["soft_labels"], expected_soft[:10])
    model = trainer.model.train()
    loss = trainer.compute_loss(model, batch)
    with torch.no_grad():
        z = model(pixel_values=batch["pixel_values"]).logits
    # probabilities are consumed as log p (logits whose softmax is p)
    targets = batch["soft_labels"].clamp_min(1e-8).log()
    torch.testing.assert_close(loss.detach(), gift_by_hand(z, targets, batch["labels"], 10), rtol=1e-5, atol=1e-6)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result = trainer.train()
    assert torch.isfinite(torch.tensor(result.training_loss))
    assert any(not torch.equal(before[k], v) for k, v in trainer.model.state_dict().items())


def test_trains_from_stored_dense_soft_labels(stored, digits_transform, tiny_model):
    root, dirs, dense = stored
    trainer, train, info = trainer_for(root, dirs["dense"], digits_transform, tiny_model)
    assert info.training_kwargs() == {"soft_label_source": "dataset", "soft_label_kind": "probabilities"}
    check_loss_and_training(trainer, train, dense)


def test_trains_from_stored_sparse_topk_labels_densified_per_batch(stored, digits_transform, tiny_model):
    root, dirs, dense = stored
    trainer, train, info = trainer_for(root, dirs["topk"], digits_transform, tiny_model)
    assert info.topk == 3 and "soft_label" not in train.column_names
    # the densified batch is exactly keep-top-3 of the dense labels (zeros elsewhere)
    check_loss_and_training(trainer, train, keep_topk(dense, 3))


def test_stored_labels_with_another_loss_and_evaluation(stored, digits, digits_transform, tiny_model):
    root, dirs, dense = stored
    trainer, train, _ = trainer_for(root, dirs["dense"], digits_transform, tiny_model, loss="kl", temperature=1.0)
    batch = trainer.data_collator([train[i] for i in range(10)])
    model = trainer.model.train()
    with torch.no_grad():
        z = model(pixel_values=batch["pixel_values"]).logits
    # KL(p || softmax(z)) at T = 1 on the stored probabilities, by hand
    p = batch["soft_labels"]
    by_hand = (p * (p.clamp_min(1e-8).log() - F.log_softmax(z, 1))).sum(1).mean()
    torch.testing.assert_close(trainer.compute_loss(model, batch).detach(), by_hand, rtol=1e-4, atol=1e-6)
    metrics = trainer.evaluate(eval_dataset=digits["test"].select(range(50)).with_transform(digits_transform))
    assert "eval_loss" in metrics and torch.isfinite(torch.tensor(metrics["eval_loss"]))
    assert get_loss("kl", temperature=1.0).needs_teacher


def test_the_train_script_takes_the_kind_from_the_dataset_card(stored, caplog):
    """Issue: a set relabelled with a temperature (probabilities) was trained as logits, without a word."""
    import logging

    from recipe_helpers import QUIET, load_recipe, one_thread

    root, dirs, _ = stored
    recipe = load_recipe()
    argv = [
        "--dataset_name",
        str(dirs["dense"]),
        "--eval_split",
        "",
        "--soft_label_source",
        "dataset",
        "--loss",
        "kl",
        "--max_steps",
        "1",
        "--per_device_train_batch_size",
        "10",
        *QUIET,
    ]
    with pytest.raises(
        ValueError,
        match=r"soft_label_kind: got 'logits' but the dataset card of .* says the stored "
        r"soft labels are 'probabilities' at temperature 4; drop --soft_label_kind",
    ):
        recipe.main([*argv, "--soft_label_kind", "logits", "--output_dir", str(root / "refused")])
    assert not (root / "refused").exists()
    with one_thread(), caplog.at_level(logging.INFO, logger="gift_hf"):
        recipe.main([*argv, "--output_dir", str(root / "from_card")])
    assert "soft_label_kind=probabilities" in caplog.text
    # the student's model card records what it was trained with
    from huggingface_hub import ModelCard

    story = ModelCard.load(root / "from_card" / "README.md").data.to_dict()["gift_hf"]
    assert story["training"]["soft_label_kind"] == "probabilities" and story["stored_soft_labels"] == "probabilities"
    # a local folder is named, never shown as a path of this machine
    assert (story["dataset"], story["ipc"], story["source_dataset"]) == ("dense", 2, "digits")
