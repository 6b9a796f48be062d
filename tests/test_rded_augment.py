"""RDED/SRe2L ops on device (patch shuffle, RandomResizedCrop, flip, CutMix) and the no-host-sync augmenter."""

import json
import math

import pytest
import torch
import torch.nn.functional as F
from host_reads import count_host_reads

from gift_hf.data.augment import DSA_OPS, RDED_STRATEGY, BatchAugmenter, DSAParams, parse_strategy, resized_crop


def randn(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def ramps(b, h, w, extra=3, seed=0):
    """Images whose channel 0 is the column index and channel 1 the row index, then `extra` random channels."""
    cols = torch.arange(w, dtype=torch.float32).expand(b, 1, h, w)
    rows = torch.arange(h, dtype=torch.float32)[:, None].expand(b, 1, h, w)
    return torch.cat([cols, rows, randn(b, extra, h, w, seed=seed)], 1)


def test_rded_strategy_parses_and_bad_params_are_named():
    assert parse_strategy(RDED_STRATEGY) == ["patchshuffle", "resizedcrop", "flip"]
    with pytest.raises(ValueError, match="shuffle_factor"):
        DSAParams(shuffle_factor=0)
    with pytest.raises(ValueError, match="resized_crop_scale"):
        DSAParams(resized_crop_scale=(0.0, 1.0))
    with pytest.raises(ValueError, match=r"patchshuffle: image size 6×6 is not a multiple of shuffle_factor=4"):
        BatchAugmenter("patchshuffle", params=DSAParams(shuffle_factor=4))(randn(2, 1, 6, 6))


def test_flip_twice_is_the_identity():
    x = randn(6, 3, 5, 7)
    always = BatchAugmenter("flip", mode="all", params=DSAParams(flip=1.0))
    once = always(x)[0]
    assert torch.equal(once, x.flip(-1))  # hand: column j becomes column W-1-j
    assert torch.equal(always(once)[0], x)


def test_patch_shuffle_permutes_the_strips_of_each_image():
    b, h, w = 64, 6, 8
    x = torch.arange(b * 2 * h * w, dtype=torch.float32).view(b, 2, h, w)  # every pixel value distinct
    out = BatchAugmenter("patchshuffle", mode="all", seed=0)(x)[0]
    half_h, half_w = h // 2, w // 2
    seen = set()
    for i in range(b):
        # the multiset of pixels is unchanged (here: the same set of distinct values)
        assert torch.equal(out[i].flatten().sort().values, x[i].flatten().sort().values)
        # factor 2: each of the two column strips and the two row strips is swapped or kept
        matches = []
        for swap_rows in (False, True):
            for swap_cols in (False, True):
                y = x[i]
                if swap_cols:
                    y = torch.cat([y[..., half_w:], y[..., :half_w]], -1)
                if swap_rows:
                    y = torch.cat([y[..., half_h:, :], y[..., :half_h, :]], -2)
                if torch.equal(out[i], y):
                    matches.append((swap_rows, swap_cols))
        assert len(matches) == 1, f"image {i} is not a strip permutation of its input"
        seen.update(matches)
    assert len(seen) == 4  # all four outcomes occur: the permutation is drawn per image


def test_resized_crop_matches_interpolate_on_each_crop():
    x = randn(4, 3, 12, 10)
    top, left = torch.tensor([0, 3, 1, 0]), torch.tensor([0, 2, 5, 1])
    height, width = torch.tensor([12, 6, 9, 5]), torch.tensor([10, 7, 4, 9])
    out = resized_crop(x, top, left, height, width, (12, 10))
    for i in range(4):
        crop = x[i : i + 1, :, top[i] : top[i] + height[i], left[i] : left[i] + width[i]]
        expected = F.interpolate(crop, size=(12, 10), mode="bilinear", align_corners=False)
        assert torch.allclose(out[i : i + 1], expected, atol=1e-5)
    assert torch.allclose(out[0], x[0], atol=1e-5)  # the whole image at its own size is the identity


def test_random_resized_crop_identity_at_full_scale_and_square_ratio():
    x = randn(8, 3, 16, 16)
    params = DSAParams(resized_crop_scale=(1.0, 1.0), resized_crop_ratio=(1.0, 1.0))
    out = BatchAugmenter("resizedcrop", mode="all", params=params)(x)[0]
    assert torch.allclose(out, x, atol=1e-5)


def test_random_resized_crop_boxes_follow_the_scale_and_ratio_ranges():
    b, h, w = 64, 32, 32
    x = ramps(b, h, w)
    out = BatchAugmenter("resizedcrop", mode="all", seed=1)(x)[0]  # scale (1/2, 1), ratio (3/4, 4/3)
    areas = []
    for i in range(b):
        # bilinear resampling of a ramp clamped to the crop: min/max of the ramp are the crop's edges
        left, right = round(float(out[i, 0].min())), round(float(out[i, 0].max()))
        top, bottom = round(float(out[i, 1].min())), round(float(out[i, 1].max()))
        crop_w, crop_h = right - left + 1, bottom - top + 1
        assert 0 <= left and right < w and 0 <= top and bottom < h
        # rounding of the side lengths widens the ranges by at most one pixel per side
        assert 0.5 * (h * w) <= (crop_h + 1) * (crop_w + 1) and crop_h * crop_w <= h * w
        assert 3 / 4 <= (crop_w + 1) / max(crop_h - 1, 1) and (crop_w - 1) / (crop_h + 1) <= 4 / 3
        crop = x[i : i + 1, 2:, top : bottom + 1, left : right + 1]
        expected = F.interpolate(crop, size=(h, w), mode="bilinear", align_corners=False)
        assert torch.allclose(out[i : i + 1, 2:], expected, atol=1e-4)
        areas.append(crop_h * crop_w / (h * w))
    assert min(areas) < 0.6 and max(areas) > 0.9  # the whole range is drawn, per image


def test_rded_pipeline_with_cutmix_mixes_labels_by_the_pasted_area():
    b, c, h, w = 8, 8, 16, 16
    x, labels = ramps(b, h, w, extra=1), torch.arange(b)  # each image its own class
    aug = BatchAugmenter(RDED_STRATEGY, mode="all", mix="cutmix", mix_beta=1.0, num_classes=c, seed=3)
    seen = 0
    for _ in range(5):
        out, mixed, _ = aug(x, labels)
        assert out.shape == x.shape and mixed.shape == (b, c)
        assert torch.allclose(mixed.sum(-1), torch.ones(b))
        kept = mixed[torch.arange(b), labels]
        partner = mixed[torch.arange(b), labels.flip(0)]
        # the λ of image i is the share of its own class; all images share one box, so one λ
        assert torch.allclose(kept, kept[0].expand(b)) and torch.allclose(kept + partner, torch.ones(b))
        seen += bool(kept[0] < 1)
    assert seen >= 3  # with β = 1 almost every batch gets a non-empty box


def test_cutmix_lambda_is_the_box_area_by_hand():
    b, c, h, w = 4, 4, 10, 10
    x = torch.arange(1, b + 1, dtype=torch.float32).view(b, 1, 1, 1).expand(b, 1, h, w).contiguous()
    out, mixed, _ = BatchAugmenter(mix="cutmix", num_classes=c, seed=5)(x, torch.arange(b))
    pasted = out[0, 0] != 1
    rows, cols = pasted.any(1).nonzero().flatten(), pasted.any(0).nonzero().flatten()
    box_h, box_w = int(rows.max() - rows.min() + 1), int(cols.max() - cols.min() + 1)
    assert int(pasted.sum()) == box_h * box_w  # one rectangle
    lam = 1 - box_h * box_w / (h * w)
    assert math.isclose(float(mixed[0, 0]), lam, rel_tol=1e-6) and math.isclose(
        float(mixed[0, 3]), 1 - lam, rel_tol=1e-6
    )


def test_state_survives_a_json_round_trip():
    x, labels = randn(8, 3, 16, 16), torch.arange(8) % 4
    aug = BatchAugmenter(RDED_STRATEGY, mode="all", mix="cutmix", num_classes=4, seed=0)
    aug(x, labels)
    state = json.loads(json.dumps({k: v.tolist() for k, v in aug.state_dict().items()}))
    expected = [aug(x, labels) for _ in range(3)]
    restored = BatchAugmenter(RDED_STRATEGY, mode="all", mix="cutmix", num_classes=4, seed=99)
    restored.load_state_dict(state)
    for out, (e_x, e_labels, _) in zip((restored(x, labels) for _ in range(3)), expected):
        assert torch.equal(out[0], e_x) and torch.equal(out[1], e_labels)
    with pytest.raises(KeyError, match="calls"):
        restored.load_state_dict({"seed": [0], "rank": [0], "step": [0]})


@pytest.fixture
def host_reads(monkeypatch):
    return count_host_reads(monkeypatch)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(ops=DSA_OPS, mode="single", mix="both", mix_prob=0.5),
        dict(ops=DSA_OPS, mode="all", mix="mixup"),
        dict(ops=RDED_STRATEGY, mode="all", mix="cutmix"),
    ],
)
def test_no_host_reads_in_augmenter_calls(host_reads, kwargs):
    x, labels, soft = randn(9, 3, 16, 16), torch.arange(9) % 10, randn(9, 10, seed=1)
    aug = BatchAugmenter(num_classes=10, seed=0, **kwargs)
    for step in range(20):
        aug.set_step(step // 2)  # two micro-batches per step
        out, mixed, mixed_soft = aug(x, labels, soft)
    assert sum(host_reads.values()) == 0, host_reads
    bool(out.sum() > 0)  # control: the counters do see host reads
    assert host_reads["__bool__"] == 1
