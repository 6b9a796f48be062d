"""A guard that fails on any read of a tensor value back to the host (`.item()`, `bool()`, `int()`).

On a GPU each such read waits for the device; the training step must have none. On the CPU
the same reads go through the same two ATen ops, so the guard proves it without a GPU.
"""

import contextlib

import torch
from torch.utils._python_dispatch import TorchDispatchMode

HOST_READS = {torch.ops.aten._local_scalar_dense.default, torch.ops.aten.is_nonzero.default}


class _Guard(TorchDispatchMode):
    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func in HOST_READS:
            raise AssertionError(f"host read of a tensor value ({func})")
        return func(*args, **(kwargs or {}))


@contextlib.contextmanager
def forbid_host_reads():
    with _Guard():
        yield
