"""Shared fixtures: offline mode, the embedded digits data and tiny models."""

import os

# Tests never reach the Hub; set before transformers/datasets are imported.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def digits():
    """The embedded digits dataset (train/test DatasetDict), built once per session."""
    from gift_hf import load_digits_dataset

    return load_digits_dataset()


@pytest.fixture(scope="session")
def digits_transform():
    from gift_hf.data.images import DIGITS_MEAN, DIGITS_STD, ImageTransform

    return ImageTransform(channels=1, mean=DIGITS_MEAN, std=DIGITS_STD)


@pytest.fixture
def tiny_model():
    """A fresh ConvNet-D3 for 8×8 grayscale digits."""
    from gift_hf import create_model

    def make(**kwargs):
        kwargs.setdefault("num_classes", 10)
        return create_model("gift_convnet_d3", in_chans=1, img_size=8, **kwargs)

    return make


def pytest_collection_modifyitems(config, items):
    """Skip the tests marked ``gpu`` where CUDA is not available, saying why."""
    gpu_items = [item for item in items if item.get_closest_marker("gpu") is not None]
    if not gpu_items:
        return  # no torch import for a run without GPU tests
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA (marked gpu): torch.cuda.is_available() is False")
    for item in gpu_items:
        item.add_marker(skip)
