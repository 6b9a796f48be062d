"""Guards against reads of a tensor value back to the host (`.item()`, `bool()`, `int()`, `float()`, `.tolist()`).

On a GPU each such read waits for the device; the training step must have none. On the CPU
the same reads happen through the same calls, so the guards prove it without a GPU:

- :func:`forbid_host_reads` fails (:class:`HostReadCounter` counts) at the dispatch level, on
  the two ATen ops every scalar read goes through (also the reads made inside torch functions);
- :func:`count_host_reads` counts the ``Tensor`` methods that read values
  (:data:`SYNC_METHODS`, ``tolist`` included, which bypasses the dispatcher).
"""

import contextlib

import torch
from torch.utils._python_dispatch import TorchDispatchMode

HOST_READS = {torch.ops.aten._local_scalar_dense.default, torch.ops.aten.is_nonzero.default}
SYNC_METHODS = ("item", "tolist", "__bool__", "__int__", "__float__", "__index__")


class _Guard(TorchDispatchMode):
    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func in HOST_READS:
            raise AssertionError(f"host read of a tensor value ({func})")
        return func(*args, **(kwargs or {}))


class HostReadCounter(TorchDispatchMode):
    """``with HostReadCounter() as reads:`` counts the dispatch-level host reads in ``reads.count``."""

    def __init__(self):
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func in HOST_READS:
            self.count += 1
        return func(*args, **(kwargs or {}))


@contextlib.contextmanager
def forbid_host_reads():
    with _Guard():
        yield


def count_host_reads(monkeypatch) -> dict[str, int]:
    """Wrap each method of :data:`SYNC_METHODS` with a counter (undone by ``monkeypatch``); returns the counts."""
    counts = {name: 0 for name in SYNC_METHODS}

    def counting(name):
        original = getattr(torch.Tensor, name)

        def wrapper(self, *args, **kwargs):
            counts[name] += 1
            return original(self, *args, **kwargs)

        return wrapper

    for name in SYNC_METHODS:
        monkeypatch.setattr(torch.Tensor, name, counting(name))
    return counts
