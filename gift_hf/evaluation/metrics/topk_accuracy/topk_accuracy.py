"""Top-k accuracy from logits: an `evaluate` metric shipped inside gift_hf.

The Hub's `accuracy` script cannot be fetched offline and takes class ids only; this one
takes the model's scores so top-1 and top-5 come from one pass. Load it by path:
``evaluate.load(gift_hf.evaluation.metrics.metric_path("topk_accuracy"))``.
"""

import datasets
import evaluate
import numpy as np

_DESCRIPTION = """
Top-k accuracy: the fraction of samples whose true class is among the k highest-scoring
classes. Top-1 is ordinary accuracy. Ties count against the sample: the true class ranks
behind every other class scored at least as high, so a true class tied with another one is
not a top-1 hit. A row with any NaN or infinite score is wrong at every k (a diverged model
must never score).
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `list` of `float`): scores (logits or probabilities), one row of
        num_classes values per sample.
    references (`list` of `int`): true class ids.
    k (`int` or `list` of `int`, defaults to `(1, 5)`): the k values to report; k values
        larger than the number of classes are skipped.

Returns:
    A dict with one entry per k: `accuracy` for k=1 and `top{k}_accuracy` otherwise, each
    in [0, 1].

Examples:
    >>> metric = evaluate.load(metric_path("topk_accuracy"))
    >>> metric.compute(predictions=[[0.1, 0.9, 0.0], [0.8, 0.15, 0.05]], references=[1, 1], k=[1, 2])
    {'accuracy': 0.5, 'top2_accuracy': 1.0}
"""

_CITATION = ""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class TopkAccuracy(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "predictions": datasets.Sequence(datasets.Value("float32")),
                    "references": datasets.Value("int64"),
                }
            ),
        )

    def _compute(self, predictions, references, k=(1, 5)):
        scores = np.asarray(predictions, dtype=np.float32)
        refs = np.asarray(references, dtype=np.int64)
        if scores.ndim != 2 or scores.shape[0] != refs.shape[0]:
            raise ValueError(
                f"predictions must be (num_samples, num_classes) matching {refs.shape[0]} references, "
                f"got {scores.shape}"
            )
        num_classes = scores.shape[1]
        if refs.size and (refs.min() < 0 or refs.max() >= num_classes):
            raise ValueError(f"references must be class ids in [0, {num_classes - 1}], got max {refs.max()}")
        ks = [k] if isinstance(k, int) else list(k)
        # rank of the true class = number of *other* classes scored at least as high (ties are
        # misses); rows with a non-finite score get rank num_classes, a miss at every k.
        true_scores = scores[np.arange(len(refs)), refs][:, None]
        rank = (scores >= true_scores).sum(axis=1) - 1
        rank[~np.isfinite(scores).all(axis=1)] = num_classes
        results = {}
        for kk in ks:
            if kk > num_classes:
                continue
            results["accuracy" if kk == 1 else f"top{kk}_accuracy"] = float((rank < kk).mean()) if len(refs) else 0.0
        return results
