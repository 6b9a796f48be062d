"""Count the Tensor methods that read a value back to the host (on a GPU each one waits for the device)."""

import torch

SYNC_METHODS = ("item", "tolist", "__bool__", "__int__", "__float__", "__index__")


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
