"""The RDED/SRe2L recipes: their values build a GIFTConfig, and the schedule is the protocol's half-cosine."""

import dataclasses
import math
from pathlib import Path

import pytest
import torch
import yaml
from transformers.optimization import get_scheduler

from gift_hf import GIFTConfig
from gift_hf.data.augment import build_augmenter

RECIPES = Path(__file__).resolve().parents[1] / "recipes" / "rded"


@pytest.fixture(params=["imagenet1k.yaml", "tiny_imagenet.yaml"])
def recipe(request):
    return yaml.safe_load((RECIPES / request.param).read_text())


def test_recipe_values_build_a_config_with_the_rded_pipeline(recipe, tmp_path):
    fields = {f.name for f in dataclasses.fields(GIFTConfig)}
    known = {k: v for k, v in recipe.items() if k in fields and k != "output_dir"}
    args = GIFTConfig(output_dir=str(tmp_path), use_cpu=True, **known)
    assert (args.num_train_epochs, args.learning_rate, args.weight_decay) == (300, 1e-3, 0.01)
    assert (args.loss, args.temperature) == ("kl", 20.0)
    augmenter = build_augmenter(args, num_classes=10)
    assert augmenter.ops == ["patchshuffle", "resizedcrop", "flip"] and augmenter.mode == "all"
    assert (augmenter.mix, augmenter.mix_prob, augmenter.mix_beta) == ("cutmix", 1.0, 1.0)
    assert augmenter.params.resized_crop_scale == (1 / augmenter.params.shuffle_factor, 1.0)  # (1/factor, 1)
    assert recipe["eval_every_epochs"] == 10 and recipe["eval_start_fraction"] == 0.8


def test_schedule_is_the_half_cosine_of_the_protocol(recipe):
    epochs, steps_per_epoch = 300, 4
    optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=recipe["learning_rate"])
    scheduler = get_scheduler(
        recipe["lr_scheduler_type"],
        optimizer,
        num_warmup_steps=recipe["warmup_steps"],
        num_training_steps=epochs * steps_per_epoch,
        scheduler_specific_kwargs=recipe["lr_scheduler_kwargs"],
    )
    rates = []
    for _ in range(epochs * steps_per_epoch):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    for epoch in (0, 1, 150, 240, 299):
        # hand: lr · 0.5 · (1 + cos(π · epoch / epochs / 2)), at the first step of each epoch
        expected = 1e-3 * 0.5 * (1 + math.cos(math.pi * epoch / epochs / 2))
        assert rates[epoch * steps_per_epoch] == pytest.approx(expected, rel=1e-9)
    assert rates[-1] == pytest.approx(0.5e-3, rel=1e-2)  # half-cosine: ends near lr / 2, not 0
