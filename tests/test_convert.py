"""Converters: research tensor files and class-folder trees → distilled datasets in the Hub layout."""

import io

import numpy as np
import pytest
import torch
from distilled_helpers import png_bytes
from PIL import Image as PILImage

from gift_hf import load_distilled
from gift_hf.data.convert import convert, from_image_folder, from_tensor_file


class Payload:
    """An arbitrary object: unpickling it would run ``__reduce__`` (a classic code-execution vector)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_uint8_tensor_file_becomes_lossless_png_images(tmp_path):
    data = torch.randint(0, 256, (6, 3, 5, 4), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    torch.save({"data": data, "label": torch.tensor([0, 1, 2, 0, 1, 2])}, tmp_path / "syn.pt")
    ds, info = from_tensor_file(tmp_path / "syn.pt", class_names=["a", "b", "c"], method="dm")
    assert ds.column_names == ["image", "label"] and ds.features["label"].names == ["a", "b", "c"]
    pixels = np.stack([np.asarray(img).transpose(2, 0, 1) for img in ds["image"]])
    np.testing.assert_array_equal(pixels, data.numpy())
    assert ds["label"] == [0, 1, 2, 0, 1, 2]
    assert (info.ipc, info.num_classes, info.image_size) == (2, 3, [5, 4])
    assert (info.method, info.soft_label_kind) == ("dm", None)


def test_float_tensor_file_with_soft_labels_round_trips_through_the_hub_layout(tmp_path):
    generator = torch.Generator().manual_seed(1)
    data = torch.randn(4, 1, 3, 3, generator=generator)  # normalised: negative values, not 8-bit representable
    soft = torch.randn(4, 5, generator=generator)
    torch.save((data, soft), tmp_path / "syn.pt")
    out, info = convert(tmp_path / "syn.pt", tmp_path / "set", soft_label_kind="logits", source_dataset="toy")
    ds, loaded_info = load_distilled(out, cache_dir=str(tmp_path / "cache"))
    train = ds["train"]
    np.testing.assert_array_equal(np.asarray(train["pixel_values"], dtype=np.float32), data.numpy())
    np.testing.assert_array_equal(np.asarray(train["soft_label"], dtype=np.float32), soft.numpy())
    assert train["label"] == soft.argmax(1).tolist()
    assert loaded_info == info and info.soft_label_kind == "logits" and info.num_classes == 5


def test_float_images_in_unit_range_can_be_stored_as_8_bit(tmp_path):
    data = torch.tensor([[[[0.0, 1.0], [0.5, 0.2]]]]).repeat(2, 1, 1, 1)
    torch.save({"images": data, "targets": torch.tensor([0, 1])}, tmp_path / "f.pt")
    ds, _ = from_tensor_file(tmp_path / "f.pt", data_key="images", label_key="targets", image_format="image")
    np.testing.assert_array_equal(np.asarray(ds[0]["image"]), [[0, 255], [128, 51]])  # round(x * 255)
    torch.save({"data": data - 1, "label": torch.tensor([0, 1])}, tmp_path / "neg.pt")
    with pytest.raises(ValueError, match=r"float values must lie in \[0, 1\] to be stored as 8-bit images"):
        from_tensor_file(tmp_path / "neg.pt", image_format="image")


def test_tensor_file_needing_arbitrary_unpickling_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    torch.save(
        {"data": torch.zeros(1, 1, 2, 2), "label": torch.tensor([0]), "extra": Payload(str(marker))},
        tmp_path / "evil.pt",
    )
    assert not marker.exists()
    with pytest.raises(
        ValueError,
        match=r"tensor file '.*evil.pt': refused to load because it needs arbitrary Python "
        r"objects unpickled \(it references .*open; torch.load\(weights_only=True\)",
    ):
        from_tensor_file(tmp_path / "evil.pt")
    assert not marker.exists()  # the payload never ran


@pytest.mark.parametrize(
    "payload, message",
    [
        ({"data": torch.zeros(3, 1, 2, 2)}, r"has keys \['data'\] but no 'label'; expected \{'data': N×C×H×W"),
        (
            {"data": torch.zeros(3, 2, 2), "label": torch.zeros(3, dtype=torch.long)},
            r"'data' in .*: got \(3, 2, 2\); expected a tensor of shape \(N, C, H, W\)",
        ),
        (
            {"data": torch.zeros(3, 1, 2, 2), "label": torch.zeros(2, dtype=torch.long)},
            r"'label' in .* has 2 rows but 'data' has 3; expected one label per image",
        ),
        (
            {"data": torch.zeros(0, 1, 2, 2), "label": torch.zeros(0, dtype=torch.long)},
            r"'data' in .* has 0 images; expected at least one",
        ),
        (
            {"data": torch.zeros(2, 1, 2, 2), "label": torch.tensor([0.5, 1.0])},
            r"'label' in .* holds non-integer values \[0.5, 1.0\]; expected class ids",
        ),
    ],
)
def test_bad_tensor_files_are_refused(tmp_path, payload, message):
    torch.save(payload, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match=message):
        from_tensor_file(tmp_path / "bad.pt")


def test_wrong_number_of_class_names_and_corrupt_file(tmp_path):
    torch.save({"data": torch.zeros(2, 1, 2, 2), "label": torch.randn(2, 4)}, tmp_path / "s.pt")
    with pytest.raises(ValueError, match=r"class_names: got 3 names but 'label' in .* has 4 classes"):
        from_tensor_file(tmp_path / "s.pt", class_names=["a", "b", "c"])
    (tmp_path / "junk.pt").write_bytes(b"not a torch file")
    with pytest.raises(ValueError, match=r"tensor file '.*junk.pt' cannot be read .*expected a torch.save file"):
        from_tensor_file(tmp_path / "junk.pt")


def make_folder(root, corrupt: bool = False):
    """SRe2L/RDED-like layout: one folder per class, PNG and JPEG files."""
    rng = np.random.default_rng(0)
    written = {}
    for cls in ("n01440764", "n01443537"):
        (root / cls).mkdir(parents=True)
        for i in range(2):
            array = rng.integers(0, 256, size=(6, 6, 3), dtype=np.uint8)
            if i == 0:
                data = png_bytes(array)
                name = f"class_{i}.png"
            else:
                buffer = io.BytesIO()
                PILImage.fromarray(array).save(buffer, format="JPEG")
                data, name = buffer.getvalue(), f"class_{i}.jpg"
            (root / cls / name).write_bytes(data)
            written[(cls, name)] = data
    (root / "n01443537" / "notes.txt").write_text("ignored: not an image")
    if corrupt:
        (root / "n01443537" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\ntruncated")
    return written


def test_image_folder_keeps_bytes_and_names_classes_by_folder(tmp_path):
    written = make_folder(tmp_path / "syn")
    out, info = convert(tmp_path / "syn", tmp_path / "set", method="rded")
    ds, _ = load_distilled(out, cache_dir=str(tmp_path / "cache"))
    train = ds["train"]
    assert train.features["label"].names == ["n01440764", "n01443537"]
    assert train["label"] == [0, 0, 1, 1]
    from datasets import Image

    raw = train.cast_column("image", Image(decode=False))
    stored = [(train.features["label"].int2str(r["label"]), r["image"]["path"], r["image"]["bytes"]) for r in raw]
    assert [(c, p) for c, p, _ in stored] == [
        ("n01440764", "class_0.png"),
        ("n01440764", "class_1.jpg"),
        ("n01443537", "class_0.png"),
        ("n01443537", "class_1.jpg"),
    ]
    assert all(data == written[(c, p)] for c, p, data in stored)  # JPEGs stay JPEGs, byte for byte
    assert (info.ipc, info.num_classes, info.image_size, info.method) == (2, 2, [6, 6], "rded")


def test_corrupt_image_file_in_folder_is_named(tmp_path):
    make_folder(tmp_path / "syn", corrupt=True)
    with pytest.raises(
        ValueError,
        match=r"image file '.*n01443537/broken.png' cannot be decoded .*expected a valid "
        "image",
    ):
        from_image_folder(tmp_path / "syn")
    with pytest.raises(FileNotFoundError, match=r"image folder '.*nowhere' not found; expected one sub-folder per"):
        from_image_folder(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match=r"tensor file '.*nowhere.pt' not found; expected a torch.save file"):
        from_tensor_file(tmp_path / "nowhere.pt")
    with pytest.raises(ValueError, match=r"image folder '.*broken.png' is not a directory"):
        from_image_folder(tmp_path / "syn" / "n01443537" / "broken.png")


def test_symlinks_out_of_the_input_folder_are_refused(tmp_path):
    make_folder(tmp_path / "syn")
    private = tmp_path / "private"
    private.mkdir()
    (private / "secret.png").write_bytes(png_bytes(np.zeros((6, 6), np.uint8)))
    (tmp_path / "syn" / "n09999999").symlink_to(private, target_is_directory=True)  # a class folder
    with pytest.raises(
        ValueError,
        match=r"'.*syn/n09999999' is a symbolic link to '.*private', outside the input "
        r"folder; refused",
    ):
        convert(tmp_path / "syn", tmp_path / "set")
    (tmp_path / "syn" / "n09999999").unlink()
    (tmp_path / "syn" / "n01440764" / "zz.png").symlink_to(private / "secret.png")  # one image file
    with pytest.raises(ValueError, match=r"'.*n01440764/zz.png' is a symbolic link to '.*private/secret.png'"):
        from_image_folder(tmp_path / "syn")
    assert not (tmp_path / "set").exists()
    # a link that stays inside the folder is fine
    (tmp_path / "syn" / "n01440764" / "zz.png").unlink()
    (tmp_path / "syn" / "n01440764" / "zz.png").symlink_to(tmp_path / "syn" / "n01443537" / "class_0.png")
    ds, _ = from_image_folder(tmp_path / "syn")
    assert ds.num_rows == 5


def test_channels_last_float_tensor_is_refused_not_saved_sideways(tmp_path):
    torch.save({"data": torch.rand(4, 16, 16, 3), "label": torch.tensor([0, 1, 0, 1])}, tmp_path / "nhwc.pt")
    for fmt in ("auto", "image", "pixel_values"):
        with pytest.raises(
            ValueError,
            match=r"has shape \(4, 16, 16, 3\), which is channels-last \(N, H, W, C\) with "
            r"C=3; expected channels-first \(N, C, H, W\): save "
            r"data.permute\(0, 3, 1, 2\)",
        ):
            from_tensor_file(tmp_path / "nhwc.pt", image_format=fmt)
    torch.save(
        {"data": torch.rand(4, 16, 16, 3).permute(0, 3, 1, 2), "label": torch.tensor([0, 1, 0, 1])},
        tmp_path / "nchw.pt",
    )
    _, info = from_tensor_file(tmp_path / "nchw.pt")
    assert info.image_size == [16, 16]


def test_convert_into_its_own_input_is_refused(tmp_path):
    make_folder(tmp_path / "syn")
    before = sorted(str(p) for p in (tmp_path / "syn").rglob("*"))
    for output in (tmp_path / "syn", tmp_path):  # the input itself, or a folder holding it
        with pytest.raises(
            ValueError,
            match=r"output_dir '.*' holds the input '.*syn'; writing the dataset there "
            r"would replace the input",
        ):
            convert(tmp_path / "syn", output, overwrite=True)
    assert sorted(str(p) for p in (tmp_path / "syn").rglob("*")) == before
    torch.save({"data": torch.rand(2, 1, 4, 4), "label": torch.tensor([0, 1])}, tmp_path / "syn" / "t.pt")
    with pytest.raises(ValueError, match=r"holds the input"):
        convert(tmp_path / "syn" / "t.pt", tmp_path / "syn", overwrite=True)


def test_an_image_folder_of_mixed_sizes_records_no_single_image_size(tmp_path):
    (tmp_path / "syn" / "a").mkdir(parents=True)
    for i, size in enumerate((6, 8)):
        (tmp_path / "syn" / "a" / f"{i}.png").write_bytes(png_bytes(np.zeros((size, size), np.uint8)))
    _, info = from_image_folder(tmp_path / "syn")
    assert info.image_size is None  # was [6, 6], the first image's size, claimed for every image
    out, _ = convert(tmp_path / "syn", tmp_path / "set")
    _, saved = load_distilled(out, cache_dir=str(tmp_path / "cache"))
    assert saved.image_size is None and "Image size" not in (out / "README.md").read_text()
