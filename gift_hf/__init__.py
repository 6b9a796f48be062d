"""gift_hf: train models on distilled datasets with soft labels, the Hugging Face way."""

import sys
import types

__version__ = "0.1.0"

# Names resolve on first use (PEP 562): `import gift_hf` or `import gift_hf.losses` loads
# neither timm, kornia nor datasets until something that needs them is asked for.
_EXPORTS = {
    "BatchAugmenter": "augment",
    "build_difficulty_distilled": "selection",
    "build_random_distilled": "selection",
    "compute_teacher_logits": "relabel",
    "create_model": "modeling",
    "ddranking_scores": "ddranking",
    "DDRankingArguments": "ddranking",
    "DistilledInfo": "distilled",
    "evaluate_distilled": "evaluation",
    "fit_zca": "augment",
    "get_loss": "losses",
    "GIFTClassifier": "modeling",
    "GIFTClassifierConfig": "modeling",
    "GIFTConfig": "config",
    "GIFTTrainer": "trainer",
    "image_transform_for": "modeling",
    "ImageTransform": "data",
    "keep_topk": "ablations",
    "label_entropy_stats": "ablations",
    "load_digits_dataset": "data",
    "load_distilled": "distilled",
    "load_teacher": "modeling",
    "LOSSES": "losses",
    "map_soft_labels": "ablations",
    "model_spec": "modeling",
    "protocol_config": "config",
    "push_distilled": "distilled",
    "refine_soft_labels": "losses",
    "relabel": "relabel",
    "remove_class_knowledge": "ablations",
    "save_distilled": "distilled",
    "SoftLabelCollator": "data",
    "StudentTrainingArgs": "multi_student",
    "swap_topk": "ablations",
    "train_student": "training",
    "train_students": "multi_student",
    "validate_distilled": "distilled",
    "ZCA": "augment",
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


class _Package(types.ModuleType):
    """Keeps ``gift_hf.relabel`` the function: importing a submodule binds it on the package,
    and the ``relabel`` submodule must not replace the ``relabel`` function it exports."""

    def __setattr__(self, name: str, value: object) -> None:
        if name in _EXPORTS and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


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
    "StudentTrainingArgs",
    "ZCA",
    "build_difficulty_distilled",
    "build_random_distilled",
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
