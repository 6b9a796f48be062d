"""gift_hf: train models on distilled datasets with soft labels, the Hugging Face way."""

__version__ = "0.1.0"

# Names resolve on first use (PEP 562): `import gift_hf` or `import gift_hf.engine.losses` loads
# neither timm, kornia nor datasets until something that needs them is asked for.
_EXPORTS = {
    "BatchAugmenter": "data.augment",
    "build_difficulty_distilled": "data.selection",
    "build_random_distilled": "data.selection",
    "build_rded_distilled": "data.rded",
    "compute_teacher_logits": "data.relabel",
    "create_model": "models.modeling",
    "ddranking_scores": "evaluation.ddranking",
    "DDRankingArguments": "evaluation.ddranking",
    "DistilledInfo": "data.distilled",
    "evaluate_distilled": "evaluation.evaluate",
    "fit_zca": "data.augment",
    "get_loss": "engine.losses",
    "GIFTClassifier": "models.modeling",
    "GIFTClassifierConfig": "models.modeling",
    "GIFTConfig": "engine.config",
    "GIFTTrainer": "engine.trainer",
    "image_transform_for": "models.modeling",
    "ImageTransform": "data.images",
    "keep_topk": "data.ablations",
    "label_entropy_stats": "data.ablations",
    "load_digits_dataset": "data.images",
    "load_digit_pairs_dataset": "data.images",
    "load_distilled": "data.distilled",
    "load_teacher": "models.modeling",
    "LOSSES": "engine.losses",
    "map_soft_labels": "data.ablations",
    "model_spec": "models.modeling",
    "protocol_config": "engine.config",
    "push_distilled": "hub.publish",
    "refine_soft_labels": "engine.losses",
    "relabel": "data.relabel",
    "remove_class_knowledge": "data.ablations",
    "save_distilled": "data.distilled",
    "SoftLabelCollator": "data.images",
    "StudentPopulation": "engine.population",
    "swap_topk": "data.ablations",
    "train_student": "engine.training",
    "train_students": "engine.training",
    "validate_distilled": "data.distilled",
    "ZCA": "data.augment",
}


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'gift_hf' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(list(globals()) + list(_EXPORTS))


__all__ = [
    "BatchAugmenter",
    "DDRankingArguments",
    "DistilledInfo",
    "GIFTClassifier",
    "GIFTClassifierConfig",
    "GIFTConfig",
    "GIFTTrainer",
    "ImageTransform",
    "LOSSES",
    "SoftLabelCollator",
    "StudentPopulation",
    "ZCA",
    "build_difficulty_distilled",
    "build_random_distilled",
    "build_rded_distilled",
    "compute_teacher_logits",
    "create_model",
    "ddranking_scores",
    "evaluate_distilled",
    "fit_zca",
    "get_loss",
    "image_transform_for",
    "keep_topk",
    "label_entropy_stats",
    "load_digits_dataset",
    "load_digit_pairs_dataset",
    "load_distilled",
    "load_teacher",
    "map_soft_labels",
    "model_spec",
    "protocol_config",
    "push_distilled",
    "refine_soft_labels",
    "relabel",
    "remove_class_knowledge",
    "save_distilled",
    "swap_topk",
    "train_student",
    "train_students",
    "validate_distilled",
]

# Our ConvNets and ResNet live in timm's registry, so `timm.create_model("gift_convnet_d3")` and the
# model cards' `from_pretrained` work after `import gift_hf`; timm itself is imported only when used.
from gift_hf.models.timm_registry import register_when_timm_loads as _register_when_timm_loads  # noqa: E402

_register_when_timm_loads()
