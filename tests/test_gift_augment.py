"""GIFT's evaluator augmentation (``augmentation_mode="gift"``) and its factor crop, against hand computation."""

from collections import Counter
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import yaml

from gift_hf import GIFTConfig, protocol_config
from gift_hf.data.augment import (
    GIFT_ONE_OF,
    AugmentationDraw,
    BatchAugmenter,
    augment_stacked,
    build_augmenter,
)

FULL = "color_crop_cutout_flip_scale_rotate"
RECIPES = Path(__file__).resolve().parents[1] / "recipes"


def randn(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def draws(augmenter, n, shape=(4, 3, 16, 16)):
    return [augmenter.sample(shape) for _ in range(n)]


# ------------------------------------------------------------------------------ structure
def test_every_batch_is_flip_color_one_geometric_op_cutout():
    seen = Counter()
    for draw in draws(BatchAugmenter(FULL, mode="gift", seed=0), 60):
        # flip, colour and cutout on every batch; exactly one of crop/scale/rotate between them
        assert draw.ops[:2] == ("flip", "color") and draw.ops[3] == "cutout" and len(draw.ops) == 4
        assert draw.ops[2] in GIFT_ONE_OF
        seen[draw.ops[2]] += 1
    assert set(seen) == {"crop", "scale", "rotate"}
    assert all(10 <= n <= 30 for n in seen.values()), seen  # ≈ 20 each of 60


def test_gift_order_does_not_depend_on_the_strategy_string():
    forward = draws(BatchAugmenter(FULL, mode="gift", seed=3), 10)
    backward = draws(BatchAugmenter("rotate_scale_flip_cutout_crop_color", mode="gift", seed=3), 10)
    assert [d.ops for d in forward] == [d.ops for d in backward]
    for a, b in zip(forward, backward):
        for pa, pb in zip(a.params, b.params):
            assert all(torch.equal(pa[k], pb[k]) for k in pa)
    # a subset: the ops it names, with the one-of drawn among those named
    subset = draws(BatchAugmenter("cutout_rotate_flip", mode="gift", seed=0), 5)
    assert {d.ops for d in subset} == {("flip", "rotate", "cutout")}
    assert {d.ops for d in draws(BatchAugmenter("cutout_color", mode="gift", seed=0), 5)} == {("color", "cutout")}


def test_gift_mode_takes_dsa_ops_only():
    with pytest.raises(ValueError, match=r"augmentation: got op\(s\) \['patchshuffle'\] with augmentation_mode='gift'"):
        BatchAugmenter("patchshuffle_flip", mode="gift")
    with pytest.raises(ValueError, match=r"augmentation: got op\(s\) \['resizedcrop'\]"):
        GIFTConfig(output_dir="unused", augmentation="resizedcrop", augmentation_mode="gift")


# ------------------------------------------------------------------------- op parameters
def test_per_image_parameter_ranges():
    b, side = 4000, 32
    found = {}
    augmenter = BatchAugmenter(FULL, mode="gift", seed=0)
    while len(found) < 3:
        draw = augmenter.sample((b, 3, side, side))
        found.setdefault(draw.ops[2], draw.params[2])
        flip, color, cutout = draw.params[0]["u"], draw.params[1]["u"], draw.params[3]
    # flip: p 0.5 per image; colour: three u ~ U(0, 1) per image
    assert flip.shape == (b, 1, 1, 1) and abs((flip < 0.5).float().mean().item() - 0.5) < 0.03
    assert color.shape == (b, 3, 1, 1, 1) and 0 <= color.min() and color.max() < 1
    assert abs(color.mean().item() - 0.5) < 0.02 and len(color.flatten().unique()) > b  # per image, not per batch
    # crop: a shift of up to 1/8 of the side (32 / 8 = 4 pixels) per axis, every value drawn
    for axis in ("dy", "dx"):
        assert set(found["crop"][axis].flatten().tolist()) == set(range(-4, 5))
    # scale: per-axis factors u·(1.2 − 1/1.2) + 1/1.2 in [1/1.2, 1.2]
    factors = found["scale"]["u"] * (1.2 - 1 / 1.2) + 1 / 1.2
    assert factors.shape == (b, 2) and 1 / 1.2 <= factors.min() < 0.84 and 1.19 < factors.max() <= 1.2
    # rotate: (u − 0.5) · 2 · 15° in [−15°, 15°]
    degrees = (found["rotate"]["u"] - 0.5) * 30
    assert -15 <= degrees.min() < -14.9 and 14.9 < degrees.max() <= 15
    # cutout: the centre anywhere in the image (an 8 × 8 box may hang over the border)
    assert cutout["cy"].min() == 0 and cutout["cy"].max() == side


def test_color_formulas_by_hand():
    # one image, 3 channels, 1 × 2 pixels; u = (0.75, 0.25, 0.0) for brightness, saturation, contrast
    x = torch.tensor([[[[1.0, 3.0]], [[2.0, 0.0]], [[0.0, 0.0]]]])
    u = torch.tensor([0.75, 0.25, 0.0]).view(1, 3, 1, 1, 1)
    out, _, _ = BatchAugmenter(FULL, mode="gift").apply(x, AugmentationDraw(("color",), ({"u": u},)))
    # brightness x + (0.75 − 0.5):         c0 [1.25, 3.25], c1 [2.25, 0.25], c2 [0.25, 0.25]
    # saturation, channel means 1.25 and 1.25, factor 2 · 0.25 = 0.5:
    #                                       c0 [1.25, 2.25], c1 [1.75, 0.75], c2 [0.75, 0.75]
    # contrast, image mean 7.5 / 6 = 1.25, factor 0 + 0.5:
    #                                       c0 [1.25, 1.75], c1 [1.5, 1.0],   c2 [1.0, 1.0]
    hand = torch.tensor([[[[1.25, 1.75]], [[1.5, 1.0]], [[1.0, 1.0]]]])
    torch.testing.assert_close(out, hand)


def test_cutout_is_a_square_of_half_the_side():
    x = torch.ones(1, 2, 16, 16)
    draw = AugmentationDraw(("cutout",), ({"cy": torch.tensor([[[9]]]), "cx": torch.tensor([[[5]]])},))
    out, _, _ = BatchAugmenter(FULL, mode="gift").apply(x, draw)
    hand = torch.ones(1, 2, 16, 16)
    hand[:, :, 5:13, 1:9] = 0  # 8 × 8 centred on (9, 5): rows 9 − 4 … 9 + 3, columns 5 − 4 … 5 + 3
    assert torch.equal(out, hand)
    # drawn: every box is 8 × 8 where it lies inside the image, smaller only at the border
    out, _, _ = BatchAugmenter("cutout", mode="gift", seed=0)(torch.ones(200, 1, 16, 16))
    zeros = (out == 0).sum(dim=(1, 2, 3))
    assert zeros.max() == 64 and (zeros == 64).sum() > 20 and (zeros > 0).all()


# --------------------------------------------------------------------------- factor crop
def test_factor_one_is_the_identity():
    x = randn(6, 3, 8, 8)
    augmenter = BatchAugmenter(FULL, mode="gift", seed=0, factor_crop=1)
    assert all("factorcrop" not in d.ops for d in draws(augmenter, 10))
    assert torch.equal(BatchAugmenter(factor_crop=1, seed=0)(x)[0], x)
    assert build_augmenter(GIFTConfig(output_dir="unused", use_cpu=True)) is None  # nothing to do


def test_factor_two_gives_a_quadrant_resized_or_the_whole_image():
    b = 400
    x = randn(1, 3, 8, 8).expand(b, 3, 8, 8).contiguous()
    augmenter = BatchAugmenter(factor_crop=2, seed=0)
    assert augmenter.sample(x.shape).ops == ("factorcrop",)
    out, _, _ = augmenter(x)
    candidates = {"whole": x[0]}
    for name, rows, cols in (
        ("top-left", slice(0, 4), slice(0, 4)),
        ("top-right", slice(0, 4), slice(4, 8)),
        ("bottom-left", slice(4, 8), slice(0, 4)),
        ("bottom-right", slice(4, 8), slice(4, 8)),
    ):
        quadrant = x[:1, :, rows, cols]
        candidates[name] = F.interpolate(quadrant, size=(8, 8), mode="bilinear", align_corners=False)[0]
    counts = Counter()
    for image in out:
        match = [name for name, c in candidates.items() if torch.allclose(image, c, atol=1e-5)]
        assert len(match) == 1
        counts[match[0]] += 1
    # hand: whole with probability 1/4 (100 of 400), each quadrant 3/4 · 1/4 = 3/16 (75 of 400)
    assert 70 <= counts["whole"] <= 130, counts
    assert all(45 <= counts[q] <= 105 for q in candidates if q != "whole"), counts


def test_factor_crop_comes_before_the_gift_ops_and_is_validated():
    draw = BatchAugmenter(FULL, mode="gift", seed=0, factor_crop=2).sample((4, 3, 16, 16))
    assert draw.ops[0] == "factorcrop" and draw.ops[1:3] == ("flip", "color") and draw.ops[-1] == "cutout"
    for bad in (3, 0, 2.0, True):
        with pytest.raises(ValueError, match=rf"factor_crop: got {bad!r}; expected 1 \(whole images\) or 2"):
            BatchAugmenter(factor_crop=bad)
    with pytest.raises(ValueError, match=r"factor_crop: got 4"):
        GIFTConfig(output_dir="unused", factor_crop=4)


# ----------------------------------------------------------------------- seeds, stacking
def test_reproducible_by_seed_and_step():
    x = randn(8, 3, 16, 16)
    first, again, other = (BatchAugmenter(FULL, mode="gift", seed=s, factor_crop=2) for s in (5, 5, 6))
    runs = [[a(x)[0] for _ in range(3)] for a in (first, again, other)]
    assert all(torch.equal(p, q) for p, q in zip(runs[0], runs[1]))
    assert not any(torch.equal(p, q) for p, q in zip(runs[0], runs[2]))
    again.set_step(0)  # a resumed run at step 0 draws the first batch again
    assert torch.equal(again(x)[0], runs[0][0])


def test_augment_stacked_equals_separate_calls():
    k, b = 5, 6
    x = randn(k, b, 3, 16, 16)
    together = [BatchAugmenter(FULL, mode="gift", seed=s, factor_crop=2) for s in range(k)]
    separate = [BatchAugmenter(FULL, mode="gift", seed=s, factor_crop=2) for s in range(k)]
    geometric = set()
    for step in range(4):
        for a in together + separate:
            a.set_step(step)
        ops = [a.sample(x.shape[1:]).ops for a in separate]  # what each batch draws at this step
        for a in separate:
            a.set_step(step)
        geometric.add(frozenset(o[3] for o in ops))
        out, _, _ = augment_stacked(together, x)
        for i in range(k):
            torch.testing.assert_close(out[i], separate[i](x[i])[0], rtol=1e-6, atol=1e-6)
    assert any(len(g) > 1 for g in geometric)  # batches that drew different ops were grouped apart


def test_gift_mode_makes_no_host_reads(monkeypatch):
    from host_reads import count_host_reads

    x = randn(3, 8, 3, 16, 16)
    augmenters = [BatchAugmenter(FULL, mode="gift", seed=s, factor_crop=2) for s in range(3)]
    reads = count_host_reads(monkeypatch)
    for step in range(4):
        for a in augmenters:
            a.set_step(step)
        augment_stacked(augmenters, x)
        augmenters[0](x[0])
    assert sum(reads.values()) == 0, reads


# ------------------------------------------------------------------------------ protocols
def test_gift_protocol_and_recipes_use_the_gift_mode():
    augmenter = build_augmenter(protocol_config("gift", output_dir="unused", use_cpu=True))
    assert (augmenter.ops, augmenter.mode, augmenter.factor_crop) == (FULL.split("_"), "gift", 1)
    label_paper = build_augmenter(protocol_config("label_paper", output_dir="unused", use_cpu=True))
    assert label_paper.mode == "single" and label_paper.factor_crop == 1
    recipe = yaml.safe_load((RECIPES / "gift" / "imagenet1k_resnet18.yaml").read_text())
    assert (recipe["augmentation_mode"], recipe["factor_crop"], recipe["num_train_epochs"]) == ("gift", 2, 300)
    args = protocol_config("gift", output_dir="unused", use_cpu=True, factor_crop=recipe["factor_crop"])
    assert build_augmenter(args).factor_crop == 2
    # a factor crop alone still makes an augmenter
    assert build_augmenter(GIFTConfig(output_dir="unused", use_cpu=True, factor_crop=2)).ops == []
