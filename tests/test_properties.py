"""Property-based tests (hypothesis): generated malformed recipes, options and image files.

Every generated input must end in a correct result or in one clear error: a ``ValueError``
(``ConfigError``) with a message, or argparse's usage error (exit status 2 with a message on
stderr). Never another exception type, never a silent change. Each property runs a bounded,
derandomised number of examples; the number of inputs tried is printed at the end of the module.
"""

from __future__ import annotations

import contextlib
import contextvars
import io
import string

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image as PILImage

from gift_hf.data.images import ImageTransform, open_image

SETTINGS = settings(
    max_examples=100,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
TRIED: dict[str, int] = {}


@pytest.fixture(scope="module", autouse=True)
def report_inputs_tried(request):
    yield
    total = sum(TRIED.values())
    parts = ", ".join(f"{name} {count}" for name, count in TRIED.items())
    capture = request.config.pluginmanager.getplugin("capturemanager")
    with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
        print(f"\nproperty tests: {total} generated inputs tried ({parts})")


@pytest.fixture(scope="module")
def train_parser():
    from gift_hf.scripts.train import make_parser

    return make_parser


def _parse(make_parser, argv: list[str]) -> str:
    """``"ok"`` or ``"error"``: the outcome of parsing ``argv``, checked to be one of the two."""
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr):
            # its own context, as `gift-hf` runs a command: --overwrite_output_dir ends with it
            outputs = contextvars.copy_context().run(make_parser().parse_args_and_config, argv)
    except ValueError as err:  # ConfigError, __post_init__ checks: a message that says what is wrong
        assert str(err).strip(), f"empty message for {argv}"
        return "error"
    except SystemExit as exit_:  # argparse's usage error
        assert exit_.code == 2 and "error:" in stderr.getvalue(), (argv, exit_.code, stderr.getvalue())
        return "error"
    assert len(outputs) == 3
    return "ok"


YAML_TEXT = st.text(alphabet=string.ascii_letters[:6] + string.digits[:4] + " :-[]{}&*!|>#'\",.\n\t?%@`_", max_size=120)
OPTION_NAMES = st.sampled_from(
    [
        "learning_rate",
        "max_steps",
        "loss",
        "seed",
        "augmentation",
        "temperature",
        "dataset_name",
        "per_device_train_batch_size",
        "hub_tokn",
        "lr_milestones",
        "student_model_kwargs",
        "no_such_option",
        "bf16",
        "label_smoothing",
    ]
)
VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(10**6), 10**6)
    | st.floats(allow_nan=True)
    | st.text(max_size=12)
    | st.dates(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4) | st.dates(), inner, max_size=3),
    max_leaves=6,
)


@SETTINGS
@given(text=YAML_TEXT)
def test_any_malformed_yaml_recipe_is_parsed_or_one_clear_error(tmp_path_factory, train_parser, text):
    TRIED["malformed YAML text"] = TRIED.get("malformed YAML text", 0) + 1
    recipe = tmp_path_factory.mktemp("recipe") / "r.yaml"
    recipe.write_text(text)
    _parse(train_parser, ["--config", str(recipe), "--output_dir", str(recipe.parent / "out")])


@SETTINGS
@given(config=st.dictionaries(OPTION_NAMES, VALUES, max_size=4))
def test_any_recipe_mapping_is_parsed_or_one_clear_error(tmp_path_factory, train_parser, config):
    TRIED["recipe mappings"] = TRIED.get("recipe mappings", 0) + 1
    recipe = tmp_path_factory.mktemp("recipe") / "r.yaml"
    recipe.write_text(yaml.safe_dump(config))
    outcome = _parse(train_parser, ["--config", str(recipe), "--output_dir", str(recipe.parent / "out")])
    if "no_such_option" in config or "hub_tokn" in config:
        assert outcome == "error"  # an unknown key is never silently dropped


@SETTINGS
@given(
    argv=st.lists(
        st.one_of(
            OPTION_NAMES.map(lambda name: f"--{name}"),
            st.text(max_size=8),
            st.sampled_from(["--config", "--", "-", "--learning_rate=", "nan", "1e400", "-5"]),
        ),
        max_size=6,
    )
)
def test_any_command_line_is_parsed_or_one_clear_error(train_parser, argv):
    TRIED["command lines"] = TRIED.get("command lines", 0) + 1
    _parse(train_parser, argv)


def _png(size: int, mode: str) -> bytes:
    buffer = io.BytesIO()
    rng = np.random.default_rng(size)
    shape = (size, size) if mode == "L" else (size, size, len(mode))
    PILImage.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode=mode).save(buffer, format="PNG")
    return buffer.getvalue()


VALID = [_png(8, "L"), _png(5, "RGB"), _png(6, "RGBA")]


@st.composite
def damaged_images(draw) -> bytes:
    blob = bytearray(draw(st.sampled_from(VALID)))
    how = draw(st.sampled_from(["truncate", "flip", "junk", "splice"]))
    if how == "truncate":
        return bytes(blob[: draw(st.integers(0, len(blob)))])
    if how == "junk":
        return draw(st.binary(max_size=64))
    if how == "splice":
        at = draw(st.integers(0, len(blob)))
        return bytes(blob[:at]) + draw(st.binary(max_size=16)) + bytes(blob[at:])
    for _ in range(draw(st.integers(1, 4))):
        blob[draw(st.integers(0, len(blob) - 1))] = draw(st.integers(0, 255))
    return bytes(blob)


@SETTINGS
@given(blob=damaged_images(), channels=st.sampled_from([1, 3]))
def test_any_damaged_image_file_decodes_or_is_one_clear_error(blob, channels):
    TRIED["damaged image files"] = TRIED.get("damaged image files", 0) + 1
    transform = ImageTransform(channels=channels, image_size=8)
    try:
        array = transform.decode(open_image({"bytes": blob, "path": "x.png"}, "row 3"))
    except ValueError as err:
        assert str(err).startswith(("row 3 (x.png): ", "image: ")), err
        return
    assert array.shape == (8, 8, channels) and array.dtype == np.uint8  # decoded: a whole image, resized
