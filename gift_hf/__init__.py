"""gift_hf: train models on distilled datasets with soft labels, the Hugging Face way."""

__version__ = "0.1.0"

from .config import GIFTConfig
from .data import ImageTransform, SoftLabelCollator, load_digits_dataset
from .losses import LOSSES, get_loss, refine_soft_labels
from .modeling import GIFTClassifier, GIFTClassifierConfig, create_model, load_teacher
from .trainer import GIFTTrainer

__all__ = [
    "GIFTClassifier",
    "GIFTClassifierConfig",
    "GIFTConfig",
    "GIFTTrainer",
    "ImageTransform",
    "LOSSES",
    "SoftLabelCollator",
    "create_model",
    "get_loss",
    "load_digits_dataset",
    "load_teacher",
    "refine_soft_labels",
]
