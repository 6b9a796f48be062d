"""Batch augmentation applied inside the training step, on the batch's device.

PLACEHOLDER INTERFACE (issue 4 replaces the body): ``parse_strategy`` validates a strategy
string; ``build_augmenter(args, num_classes)`` returns ``None`` or a callable
``(pixel_values, labels, soft_labels) -> (pixel_values, labels, soft_labels)``.
"""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["DSA_OPS", "BatchAugmenter", "build_augmenter", "parse_strategy"]

DSA_OPS = ("flip", "crop")


def parse_strategy(strategy: str) -> list[str]:
    """``'flip_crop'`` → ``['flip', 'crop']``; ``'none'``/``''`` → ``[]``; unknown ops raise."""
    if strategy in ("", "none"):
        return []
    ops = strategy.split("_")
    unknown = [op for op in ops if op not in DSA_OPS]
    if unknown:
        raise ValueError(f"augmentation: unknown op(s) {unknown} in {strategy!r}; expected ops from {list(DSA_OPS)}")
    return ops


class BatchAugmenter:
    def __init__(self, ops: list[str], seed: int = 0) -> None:
        self.ops = ops
        self.generator = torch.Generator().manual_seed(seed)

    def __call__(self, x: torch.Tensor, labels: Any, soft_labels: Any):
        n = x.shape[0]
        if "flip" in self.ops:
            mask = (torch.rand(n, generator=self.generator) < 0.5).to(x.device)
            x = torch.where(mask.view(-1, 1, 1, 1), x.flip(-1), x)
        if "crop" in self.ops:
            pad = max(1, x.shape[-1] // 8)
            padded = torch.nn.functional.pad(x, (pad, pad, pad, pad))
            dx = torch.randint(0, 2 * pad + 1, (n,), generator=self.generator).tolist()
            dy = torch.randint(0, 2 * pad + 1, (n,), generator=self.generator).tolist()
            x = torch.stack([padded[i, :, dy[i]: dy[i] + x.shape[-2], dx[i]: dx[i] + x.shape[-1]] for i in range(n)])
        return x, labels, soft_labels


def build_augmenter(args: Any, num_classes: int | None = None) -> BatchAugmenter | None:
    ops = parse_strategy(getattr(args, "augmentation", "none"))
    return BatchAugmenter(ops, seed=getattr(args, "seed", 0)) if ops else None
