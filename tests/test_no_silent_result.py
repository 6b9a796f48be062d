"""No silent wrong result: every reader checks stored soft labels the same way, a teacher sees
images in its own preprocessing, the run identity covers the preprocessing, lossy image modes
are said, ambiguous recipes are refused, and the decode cache is checked before it is trusted."""

import logging
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from datasets import Dataset, load_dataset
from distilled_helpers import rgb_dataset
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image as PILImage
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from gift_hf import DistilledInfo, create_model, load_distilled, save_distilled
from gift_hf.data.device import decode_dataset, decoded_cache_path
from gift_hf.data.images import (
    ImageTransform,
    ResizeCenterCropTransform,
    SoftLabelCollator,
    convert_image_mode,
    preprocessing_identity,
)
from gift_hf.data.soft_labels import PROBABILITY_SUM_TOLERANCE, check_soft_labels
from gift_hf.models.modeling import (
    RenormalizeInput,
    adapt_teacher,
    check_teacher_preprocessing,
    image_transform_for,
    teacher_logits,
)
from gift_hf.parser import ConfigError, GIFTParser

PROBS = DistilledInfo(soft_label_kind="probabilities", temperature=1.0)
BAD_ROWS = {
    "all_zero": (
        [0.0, 0.0, 0.0],
        r"row 2: is all zero but soft_label_kind is 'probabilities'; expected each row to "
        r"sum to 1 \(within 0.001\)",
    ),
    "negative": (
        [1.2, -0.2, 0.0],
        r"row 2: has negative entries but soft_label_kind is 'probabilities' \(entry 1 is "
        r"-0.2\); expected values >= 0",
    ),
    "sums_to_5": (
        [1.0, 2.0, 2.0],
        r"row 2: sums to 5 but soft_label_kind is 'probabilities'; expected each row to "
        r"sum to 1",
    ),
}


def saved_with_bad_row(tmp_path: Path, row: list[float]) -> Path:
    """A gift_hf probabilities set (folder ``set``, as in every case) whose shard was then edited:
    row 2 replaced by ``row``."""
    target = save_distilled(rgb_dataset(n=6), tmp_path / "set", PROBS)
    shard = next((target / "data").glob("train-*.parquet"))
    ds = Dataset.from_parquet(str(shard), cache_dir=str(tmp_path / "pq"))
    soft = [list(r) for r in ds["soft_label"]]
    soft[2] = row
    ds = ds.remove_columns("soft_label").add_column("soft_label", soft, feature=ds.features["soft_label"])
    ds.to_parquet(str(shard))
    return target


# ------------------------------------------------------------------ soft labels: one check, every reader
@pytest.mark.parametrize("case", sorted(BAD_ROWS))
def test_train_refuses_stored_probabilities_that_are_not_distributions(tmp_path, case):
    """Issue: all-zero, negative and sum-5 rows trained silently through `gift-hf train` (clamped, uniform)."""
    from recipe_helpers import QUIET, load_recipe

    row, message = BAD_ROWS[case]
    path = saved_with_bad_row(tmp_path, row)
    argv = [
        "--dataset_name",
        str(path),
        "--eval_split",
        "",
        "--soft_label_source",
        "dataset",
        "--loss",
        "kl",
        "--max_steps",
        "1",
        "--per_device_train_batch_size",
        "6",
        "--output_dir",
        str(tmp_path / "out"),
        *QUIET,
    ]
    with pytest.raises(ValueError, match=r"column 'soft_label' \(split 'train'\), " + message):
        load_recipe().main(argv)
    assert not (tmp_path / "out").exists()
    # load_distilled runs the same check, with the same message
    with pytest.raises(ValueError, match=r"column 'soft_label' \(split 'train'\), " + message):
        load_distilled(path, cache_dir=str(tmp_path / "cache"))


def test_the_collator_and_the_decoder_run_the_same_check(tmp_path):
    rows = [
        {"pixel_values": torch.zeros(1, 2, 2), "label": 0, "soft_label": [0.5, 0.5, 0.0]},
        {"pixel_values": torch.zeros(1, 2, 2), "label": 1, "soft_label": [0.0, 0.0, 0.0]},
    ]
    collate = SoftLabelCollator(num_classes=3, soft_label_kind="probabilities")
    with pytest.raises(
        ValueError,
        match=r"column 'soft_label', batch row 1: is all zero but soft_label_kind is "
        r"'probabilities'",
    ):
        collate(rows)
    # as logits the same values are finite numbers: accepted
    assert SoftLabelCollator(num_classes=3, soft_label_kind="logits")(rows)["soft_labels"].shape == (2, 3)
    with pytest.raises(ValueError, match=r"column 'soft_label' has width 3; expected 4, the number of classes"):
        SoftLabelCollator(num_classes=4)(rows)
    ds = Dataset.from_dict(
        {
            "pixel_values": np.zeros((2, 1, 2, 2), np.float32).tolist(),
            "label": [0, 1],
            "soft_label": [r["soft_label"] for r in rows],
        }
    )
    with pytest.raises(ValueError, match=r"column 'soft_label', row 1: is all zero"):
        decode_dataset(
            ds, ImageTransform(channels=1), cache_dir=str(tmp_path), num_classes=3, soft_label_kind="probabilities"
        )


def test_rows_are_numbered_across_chunks():
    soft = np.full((40_000, 2), 0.5, np.float32)
    soft[33_333] = [0.5, 0.6]
    with pytest.raises(ValueError, match=r"column 'soft_label', row 33333: sums to 1.1 "):
        check_soft_labels(soft, "probabilities", num_classes=2)
    with pytest.raises(ValueError, match=r"row 33343: sums to 1.1 "):
        check_soft_labels(soft, "probabilities", num_classes=2, first_row=10)
    check_soft_labels(soft, "logits", num_classes=2)  # any finite logits


def test_top_k_probabilities_sum_to_at_most_one(tmp_path):
    """The k kept entries of a distribution sum to less than 1: accepted; more than 1, or 0: refused."""
    check_soft_labels([[0.6, 0.3]], "probabilities", column="soft_label_topk_values", topk=True)
    with pytest.raises(
        ValueError,
        match=r"column 'soft_label_topk_values', row 0: sums to 1.5 .* expected the k kept "
        r"entries to sum to more than 0 and at most 1",
    ):
        check_soft_labels([[0.9, 0.6]], "probabilities", column="soft_label_topk_values", topk=True)
    saved = save_distilled(rgb_dataset(n=6, soft="topk", k=2), tmp_path / "topk", PROBS)
    assert load_distilled(saved, cache_dir=str(tmp_path / "c"))[0]["train"].num_rows == 6


def test_relabel_refuses_a_teacher_whose_output_is_not_finite(digits):
    from gift_hf.data.relabel import relabel

    teacher = create_model("gift_convnet_d3", num_classes=10, in_chans=1, img_size=8)
    with torch.no_grad():
        teacher.timm_model.head.bias[3] = math.nan
    with pytest.raises(
        ValueError,
        match=r"column 'soft_label' \(split 'train', the teacher's output\), row 0: entry "
        r"\d is nan; expected finite values",
    ):
        relabel(digits["train"].select(range(4)), teacher, progress=False, device="cpu")


def test_two_local_sets_of_one_name_never_share_a_cache(tmp_path):
    """Issue: datasets cached a local folder with a card by its name alone, so `gift-hf train` on
    `b/set` read `a/set`'s rows, and a set rewritten in place was read as it was."""
    from gift_hf.data.images import DataArguments, load_image_dataset

    first = saved_with_bad_row(tmp_path / "a", [0.0, 0.0, 1.0])
    second = saved_with_bad_row(tmp_path / "b", [0.0, 1.0, 0.0])
    read = lambda path: load_image_dataset(DataArguments(dataset_name=str(path), eval_split=None))["train"]  # noqa
    assert read(first)["soft_label"][2] == [0.0, 0.0, 1.0]
    assert read(second)["soft_label"][2] == [0.0, 1.0, 0.0]
    assert load_distilled(second)[0]["train"]["soft_label"][2] == [0.0, 1.0, 0.0]
    save_distilled(rgb_dataset(n=9), first, PROBS, overwrite=True)  # rewritten in place
    assert read(first).num_rows == 9 and load_distilled(first)[0]["train"].num_rows == 9


# ------------------------------------------------------------------ teacher against student preprocessing
def test_a_teacher_of_another_size_or_channels_is_refused():
    teacher = create_model("gift_convnet_d3", num_classes=10, in_chans=3, img_size=16)
    student = create_model("gift_convnet_d3", num_classes=10, in_chans=3, img_size=32)
    with pytest.raises(
        ValueError,
        match=r"teacher: the teacher takes 16×16 images but the student's batches are "
        r"32×32 images; expected the teacher's own preprocessing",
    ):
        check_teacher_preprocessing(teacher, student)
    gray = create_model("gift_convnet_d3", num_classes=10, in_chans=1, img_size=16)
    with pytest.raises(
        ValueError,
        match=r"the teacher takes 1-channel images but the student's batches are "
        r"3-channel images",
    ):
        adapt_teacher(gray, teacher)


def test_another_normalisation_is_converted_exactly():
    """x_teacher = (x_student·std_s + mean_s − mean_t) / std_t: the teacher sees its own preprocessing."""
    torch.manual_seed(0)
    teacher = create_model(
        "gift_convnet_d3",
        num_classes=10,
        in_chans=3,
        img_size=8,
        image_mean=[0.4914, 0.4822, 0.4465],
        image_std=[0.247, 0.243, 0.261],
    )
    student = create_model(
        "gift_convnet_d3", num_classes=10, in_chans=3, img_size=8, image_mean=[0.5], image_std=[0.25]
    )
    assert check_teacher_preprocessing(teacher, teacher) is None
    renormalize = check_teacher_preprocessing(teacher, student)
    assert isinstance(renormalize, RenormalizeInput)
    # by hand for channel 0: scale 0.25 / 0.247, shift (0.5 - 0.4914) / 0.247
    assert renormalize.scale[0].item() == pytest.approx(0.25 / 0.247)
    assert renormalize.shift[0].item() == pytest.approx((0.5 - 0.4914) / 0.247)
    image = PILImage.fromarray(np.random.default_rng(0).integers(0, 256, (8, 8, 3), dtype=np.uint8))
    batch = {"image": [image]}
    as_student = image_transform_for(student)(batch)["pixel_values"][0][None]
    as_teacher = image_transform_for(teacher)(batch)["pixel_values"][0][None]
    torch.testing.assert_close(renormalize(as_student), as_teacher, atol=1e-5, rtol=0)
    adapted = adapt_teacher(teacher.eval(), student)
    torch.testing.assert_close(
        teacher_logits(adapted, as_student), teacher_logits(teacher, as_teacher), atol=1e-4, rtol=0
    )
    assert adapted.config.num_labels == 10 and adapt_teacher(teacher, teacher) is teacher


# ------------------------------------------------------------------ the preprocessing is part of a run
def test_the_preprocessing_identity_changes_with_what_the_student_sees():
    base = preprocessing_identity(ImageTransform(image_size=8, channels=3, mean=(0.5,), std=(0.5,)))
    assert base == preprocessing_identity(ImageTransform(image_size=8, channels=3, mean=(0.5,) * 3, std=(0.5,) * 3))
    assert base["mean"] == [0.5, 0.5, 0.5] and base["image_size"] == 8 and base["channels"] == 3
    for other in (
        ImageTransform(image_size=8, channels=3, mean=(0.4,), std=(0.5,)),
        ImageTransform(image_size=8, channels=3, mean=(0.5,), std=(0.2,)),
        ImageTransform(image_size=16, channels=3),
        ImageTransform(image_size=8, channels=1),
        ResizeCenterCropTransform(image_size=8, channels=3),
    ):
        assert preprocessing_identity(other) != base
    assert preprocessing_identity(None) is None


# ------------------------------------------------------------------ image modes
def rgba(alpha: int) -> PILImage.Image:
    array = np.full((4, 4, 4), 100, np.uint8)
    array[..., 3] = alpha
    return PILImage.fromarray(array, mode="RGBA")


def test_lossy_modes_warn_once_per_dataset_and_lossless_ones_are_silent(caplog):
    transform = ImageTransform(channels=3)
    with caplog.at_level(logging.WARNING, logger="gift_hf"):
        opaque = transform.decode(rgba(255))
        assert caplog.text == ""  # fully opaque alpha loses nothing
        for _ in range(3):
            transform.decode(rgba(0))
    warnings = [r.getMessage() for r in caplog.records]
    assert warnings == [
        "images of mode RGBA converted to RGB lose information: transparency dropped (transparent "
        "pixels show the colour stored under them) (said once per dataset)"
    ]
    assert (opaque == 100).all()
    # 16-bit: exact 8-bit values (multiples of 257) are silent; others rounded with one warning
    caplog.clear()
    exact = PILImage.fromarray(np.array([[0, 257 * 7], [257 * 200, 65535]], np.uint16))
    gray = ImageTransform(channels=1)
    with caplog.at_level(logging.WARNING, logger="gift_hf"):
        assert gray.decode(exact)[..., 0].tolist() == [[0, 7], [200, 255]]
        assert caplog.text == ""
        assert gray.decode(PILImage.fromarray(np.array([[1000]], np.uint16)))[0, 0, 0] == round(1000 / 257)
    assert "16-bit values rounded to 8 bits" in caplog.text
    # a palette image whose colour 0 is transparent: said too
    palette = PILImage.new("P", (2, 2))
    palette.info["transparency"] = 0
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="gift_hf"):
        ImageTransform(channels=3).decode(palette)
    assert "images of mode P converted to RGB lose information: transparency dropped" in caplog.text
    # 32-bit float in [0, 1] has no defined 8-bit scale (it used to become all 0 and 1)
    with pytest.raises(
        ValueError,
        match=r"image: mode 'F' \(32-bit float\) with values in \[0, 0.5\] has no defined "
        r"8-bit scale",
    ):
        gray.decode(PILImage.fromarray(np.array([[0.0, 0.5]], np.float32)))
    with pytest.raises(ValueError, match=r"image: got an image of 0×3 pixels; expected at least 1×1"):
        gray.decode(PILImage.new("L", (0, 3)))


MODES = [
    "1",
    "L",
    "P",
    "RGB",
    "RGBA",
    "RGBX",
    "RGBa",
    "CMYK",
    "YCbCr",
    "LAB",
    "HSV",
    "I",
    "F",
    "LA",
    "La",
    "PA",
    "I;16",
    "I;16L",
    "I;16B",
    "I;16N",
]
LOSSLESS = {"1", "L", "P", "RGB", "RGBX", "YCbCr", "HSV"}


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    mode=st.sampled_from(MODES),
    width=st.integers(1, 9),
    height=st.integers(1, 9),
    channels=st.sampled_from([1, 3]),
    image_size=st.sampled_from([None, 1, 5]),
    data=st.data(),
)
def test_every_pillow_mode_decodes_or_is_one_clear_error(caplog, mode, width, height, channels, image_size, data):
    """Every mode and odd size ends in a (H, W, C) uint8 array — said when information is lost — or one
    ValueError naming the mode; never another exception, never a silent change."""
    raw = data.draw(
        st.binary(
            min_size=len(PILImage.new(mode, (width, height)).tobytes()),
            max_size=len(PILImage.new(mode, (width, height)).tobytes()),
        )
    )
    image = PILImage.frombytes(mode, (width, height), raw)
    if mode == "P":
        image.putpalette(list(range(256)) * 3)
    transform = ImageTransform(image_size=image_size, channels=channels)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="gift_hf"):
        try:
            array = transform.decode(image)
        except ValueError as err:
            assert f"mode {mode!r}" in str(err) and mode in ("I", "F"), str(err)
            return
    size = (image_size, image_size) if image_size else (height, width)
    assert array.dtype == np.uint8 and array.shape == (*size, channels)
    converted, lost = convert_image_mode(image, "L" if channels == 1 else "RGB")
    if lost is not None:  # lossy: said, in one line naming the mode
        assert [r.getMessage() for r in caplog.records] == [
            f"images of mode {mode} converted to {converted.mode} lose information: {lost[1]} (said once per dataset)"
        ]
    else:  # silent only where nothing was lost
        assert caplog.text == "" and mode not in ("CMYK", "LAB")
    if mode in LOSSLESS:
        assert lost is None
    if mode == ("L" if channels == 1 else "RGB") and image_size in (None,):
        assert np.array_equal(array.reshape(np.asarray(image).shape), np.asarray(image))  # untouched


# ------------------------------------------------------------------ soft-label property
BAD_KINDS = st.sampled_from(["negative", "nan", "inf", "zero", "not_one", "width"])


@settings(max_examples=100, deadline=None)
@given(
    rows=st.integers(1, 6),
    classes=st.integers(2, 7),
    bad=BAD_KINDS,
    seed=st.integers(0, 2**16),
    where=st.sampled_from(["check", "collator", "decode"]),
)
def test_every_bad_soft_label_row_is_one_clear_error(tmp_path_factory, rows, classes, bad, seed, where):
    rng = np.random.default_rng(seed)
    soft = rng.dirichlet(np.ones(classes), size=rows)
    row = int(rng.integers(rows))
    if bad == "negative":
        soft[row, 0], soft[row, 1] = soft[row, 0] + 0.5, soft[row, 1] - 0.5 - soft[row, 1]  # still sums to 1
    elif bad == "nan":
        soft[row, 0] = np.nan
    elif bad == "inf":
        soft[row, -1] = np.inf
    elif bad == "zero":
        soft[row] = 0
    elif bad == "not_one":
        soft[row] *= rng.choice([0.5, 1.5, 5.0])
    elif bad == "width":
        soft = np.concatenate([soft, np.zeros((rows, 1))], axis=1)
    expected = {
        "negative": r"has negative entries",
        "nan": r"entry 0 is nan",
        "inf": r"entry \d+ is inf",
        "zero": r"is all zero",
        "not_one": r"sums to",
        "width": rf"has width {classes + 1}; expected {classes}",
    }
    pattern = rf"column 'soft_label'.*{expected[bad]}"
    with pytest.raises(ValueError, match=pattern) as info:
        if where == "check":
            check_soft_labels(soft, "probabilities", num_classes=classes)
        elif where == "collator":
            SoftLabelCollator(num_classes=classes, soft_label_kind="probabilities")(
                [{"pixel_values": torch.zeros(1, 1, 1), "label": 0, "soft_label": s} for s in soft]
            )
        else:
            ds = Dataset.from_dict(
                {
                    "pixel_values": np.zeros((rows, 1, 1, 1), np.float32).tolist(),
                    "label": [0] * rows,
                    "soft_label": soft.astype(np.float32).tolist(),
                }
            )
            decode_dataset(
                ds,
                ImageTransform(channels=1),
                num_classes=classes,
                soft_label_kind="probabilities",
                cache_dir=str(tmp_path_factory.mktemp("c")),
            )
    if bad != "width":
        assert f"row {row}" in str(info.value)
    # the same rows, made distributions again, pass
    good = rng.dirichlet(np.ones(classes), size=rows)
    check_soft_labels(good.astype(np.float16), "probabilities", num_classes=classes)
    assert abs(good.sum(1) - 1).max() < PROBABILITY_SUM_TOLERANCE


# ------------------------------------------------------------------ decode cache
def write_set(root: Path, n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    images = [PILImage.fromarray(rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)) for _ in range(n)]
    (root / "data").mkdir(parents=True)
    Dataset.from_dict({"image": images, "label": [i % 2 for i in range(n)]}).to_parquet(
        str(root / "data" / "train-00000-of-00001.parquet")
    )
    return load_dataset(str(root), split="train", cache_dir=str(root.parent / f"hf-{root.name}"))


def test_a_decode_cache_of_another_key_or_row_count_is_rebuilt(tmp_path, caplog):
    transform, cache = ImageTransform(channels=3), str(tmp_path / "cache")
    ours, other = write_set(tmp_path / "ours", 6), write_set(tmp_path / "other", 4, seed=1)
    expected = decode_dataset(ours, transform, cache_dir=cache)["pixel_values"]
    path = decoded_cache_path(ours, transform, cache)
    decode_dataset(other, transform, cache_dir=cache)
    shutil.copy(decoded_cache_path(other, transform, cache), path)  # another set's file at our key
    with caplog.at_level(logging.WARNING, logger="gift_hf"):
        again = decode_dataset(ours, transform, cache_dir=cache)["pixel_values"]
    assert torch.equal(again, expected)
    assert "was written for another dataset, transform or columns" in caplog.text
    # our key, but the wrong number of rows (a file cut short by hand)
    tensors = load_file(path)
    with safe_open(path, framework="pt") as f:
        metadata = f.metadata()
    save_file({k: v[:3].contiguous() for k, v in tensors.items()}, path, metadata=metadata)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="gift_hf"):
        assert torch.equal(decode_dataset(ours, transform, cache_dir=cache)["pixel_values"], expected)
    assert "holds {'labels': 3, 'pixel_values': 3} rows but the dataset has 6" in caplog.text
    assert load_file(path)["pixel_values"].shape[0] == 6  # rewritten


# ------------------------------------------------------------------ ambiguous recipes
def parse(tmp_path: Path, text: str, *argv: str):
    from gift_hf import GIFTConfig

    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(text)
    return GIFTParser([GIFTConfig]).parse_args_and_config(["--config", str(recipe), "--output_dir", "o", *argv])


@pytest.mark.parametrize(
    "text, message",
    [
        (
            "learning_rate: 0.1\nseed: 1\nlearning_rate: 0.2\n",
            r"key 'learning_rate' is given twice \(lines 1 and 3\); expected each key once",
        ),
        (
            "learning_rate: 0.1\nlearning-rate: 0.2\n",
            r"both 'learning-rate' and 'learning_rate' name the option 'learning_rate'; expected each option once",
        ),
        (
            "learning-rate: 0.2\n",
            r"key 'learning-rate' names the option 'learning_rate'; expected each option once, "
            r"spelled 'learning_rate'",
        ),
        (
            "push_to_hub: no\n",
            r"line 1: 'no' is a boolean in YAML 1.1 but a string in YAML 1.2; expected true or false",
        ),
        ("bf16: off\n", r"line 1: 'off' is a boolean in YAML 1.1"),
        ("push_to_hub: 'no'\n", r"key 'push_to_hub' got 'no'; expected true or false \(a YAML boolean, unquoted"),
        ("seed: [1, 2]\n", r"key 'seed' got a list \[1, 2\]; expected an integer"),
        ("max_steps: null\n", r"key 'max_steps' got null; expected an integer \(the option has no 'unset' value"),
    ],
)
def test_ambiguous_recipes_are_refused_in_one_line(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message):
        parse(tmp_path, text)


def test_an_option_given_twice_on_the_command_line_is_refused(tmp_path, capsys):
    with pytest.raises(SystemExit):
        parse(tmp_path, "seed: 1\n", "--learning_rate", "0.1", "--learning-rate", "0.2")
    assert "option 'learning_rate' is given twice (--learning_rate and --learning-rate)" in capsys.readouterr().err
    (config,) = parse(tmp_path, "learning_rate: 0.1\npush_to_hub: false\n", "--learning_rate", "0.3")
    assert config.learning_rate == 0.3 and config.push_to_hub is False  # the command line still overrides the file
