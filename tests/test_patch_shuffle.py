"""RDED's patch-shuffle factor: a GIFTConfig option read by the RDED ops, 1 in the Tiny-ImageNet recipe, 2 on
ImageNet-1K; distinct from GIFT's factor crop."""

import pytest
import torch

from gift_hf import GIFTConfig
from gift_hf.data.augment import RDED_STRATEGY, BatchAugmenter, build_augmenter


def config(**kwargs):
    return GIFTConfig(**{"output_dir": "out", "augmentation": RDED_STRATEGY, "augmentation_mode": "all", **kwargs})


def test_the_factor_sets_both_rded_ops():
    two = build_augmenter(config())
    assert (two.params.shuffle_factor, two.params.resized_crop_scale) == (2, (0.5, 1.0))  # default: ImageNet-1K's
    one = build_augmenter(config(patch_shuffle_factor=1))
    assert (one.params.shuffle_factor, one.params.resized_crop_scale) == (1, (1.0, 1.0))
    assert one.factor_crop == 1 and build_augmenter(config(factor_crop=2, patch_shuffle_factor=1)).factor_crop == 2


def test_factor_one_keeps_images_whole_and_factor_two_shuffles_strips():
    x = torch.arange(4 * 3 * 4 * 4, dtype=torch.float32).reshape(4, 3, 4, 4)
    labels = torch.arange(4)
    whole = build_augmenter(config(patch_shuffle_factor=1, augmentation="patchshuffle"))
    assert torch.equal(whole(x, labels, None)[0], x)
    shuffled = build_augmenter(config(patch_shuffle_factor=2, augmentation="patchshuffle", seed=3))
    out = shuffled(x, labels, None)[0]
    assert not torch.equal(out, x)
    for a, b in zip(out, x):  # each image is a rearrangement of its own 2×2 strips: the same pixel values
        assert torch.equal(a.flatten().sort().values, b.flatten().sort().values)
    assert isinstance(shuffled, BatchAugmenter)


def test_rded_recipes_use_the_scripts_factors():
    from gift_hf.scripts.evaluate import make_parser

    for recipe, factor in (("recipes/rded/tiny_imagenet.yaml", 1), ("recipes/rded/imagenet1k.yaml", 2)):
        parsed = make_parser().parse_args_and_config(["--config", recipe, "--distilled", "x", "--output_dir", "o"])
        (cfg,) = [p for p in parsed if isinstance(p, GIFTConfig)]
        assert cfg.patch_shuffle_factor == factor and cfg.factor_crop == 1, recipe


def test_a_bad_factor_is_named():
    with pytest.raises(ValueError, match=r"patch_shuffle_factor: got 0; expected an integer >= 1"):
        config(patch_shuffle_factor=0)
