"""gift_hf: train models on distilled datasets with soft labels, the Hugging Face way."""

__version__ = "0.1.0"

from .ablations import keep_topk, label_entropy_stats, map_soft_labels, remove_class_knowledge, swap_topk
from .augment import ZCA, BatchAugmenter, fit_zca
from .config import GIFTConfig
from .data import ImageTransform, SoftLabelCollator, load_digits_dataset
from .distilled import DistilledInfo, load_distilled, push_distilled, save_distilled, validate_distilled
from .evaluation import EvalProtocol, evaluate_distilled, get_protocol
from .losses import LOSSES, get_loss, refine_soft_labels
from .modeling import GIFTClassifier, GIFTClassifierConfig, create_model, image_transform_for, load_teacher, model_spec
from .relabel import compute_teacher_logits, relabel
from .selection import build_difficulty_distilled, build_random_distilled
from .trainer import GIFTTrainer

__all__ = [
    "BatchAugmenter",
    "DistilledInfo",
    "EvalProtocol",
    "GIFTClassifier",
    "GIFTClassifierConfig",
    "GIFTConfig",
    "GIFTTrainer",
    "ImageTransform",
    "LOSSES",
    "SoftLabelCollator",
    "ZCA",
    "build_difficulty_distilled",
    "build_random_distilled",
    "compute_teacher_logits",
    "create_model",
    "evaluate_distilled",
    "fit_zca",
    "get_loss",
    "get_protocol",
    "image_transform_for",
    "keep_topk",
    "label_entropy_stats",
    "load_digits_dataset",
    "load_distilled",
    "load_teacher",
    "map_soft_labels",
    "model_spec",
    "push_distilled",
    "refine_soft_labels",
    "relabel",
    "remove_class_knowledge",
    "save_distilled",
    "swap_topk",
    "validate_distilled",
]
