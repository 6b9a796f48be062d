"""Data: image datasets and their transforms (``images``), augmentation, device-resident sets,
distilled sets in the Hub layout, selection, relabelling, conversion and soft-label ablations.

The names of :mod:`gift_hf.data.images` are also importable from here
(``from gift_hf.data import load_digits_dataset``); they load on first use.
"""


def __getattr__(name: str):
    from gift_hf.data import images

    if name in images.__all__:
        return getattr(images, name)
    raise AttributeError(f"module 'gift_hf.data' has no attribute {name!r}")
