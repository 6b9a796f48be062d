"""Register gift_hf's architectures in timm as soon as timm is there, without importing it.

``import gift_hf`` must stay light (no torch, no timm: ``gift-hf --help`` is instant), yet
``timm.create_model("gift_convnet_d3", ...)`` and ``AutoModelForImageClassification.from_pretrained``
of a saved ConvNet student must work after it, whenever timm gets imported. So
:func:`register_when_timm_loads` either imports the registering modules at once (timm is
already loaded) or puts a small finder on ``sys.meta_path`` that lets the normal import
of ``timm`` run and then imports them, right after ``timm/__init__.py`` has finished.
Nothing else is intercepted; the finder removes itself once timm is loaded.
"""

from __future__ import annotations

import importlib
import importlib.abc
import sys
from typing import Any

__all__ = ["REGISTERING_MODULES", "register_when_timm_loads"]

#: The modules whose import runs timm's ``@register_model`` for our architectures.
REGISTERING_MODULES = ("gift_hf.models.convnet", "gift_hf.models.resnet")


def _register() -> None:
    for name in REGISTERING_MODULES:
        importlib.import_module(name)  # a module already being imported is returned as is


class _RegisterAfterTimm(importlib.abc.MetaPathFinder):
    """Finds nothing itself; for ``timm`` it wraps the real loader so registration follows its import."""

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        if fullname != "timm":
            return None
        # the finders after us; a lookup alone (``importlib.util.find_spec("timm")``, as
        # transformers does to see what is installed) loads nothing, so we stay until a load
        later = sys.meta_path[sys.meta_path.index(self) + 1 :] if self in sys.meta_path else []
        spec = next(
            (
                s
                for f in later
                if hasattr(f, "find_spec")
                for s in [f.find_spec(fullname, path, target)]
                if s is not None
            ),
            None,
        )
        if spec is not None and spec.loader is not None and hasattr(spec.loader, "exec_module"):
            spec.loader = _ThenRegister(spec.loader)
        return spec


class _ThenRegister(importlib.abc.Loader):
    """``loader``, plus :func:`_register` once the module has executed."""

    def __init__(self, loader: Any) -> None:
        self.loader = loader

    def create_module(self, spec: Any) -> Any:
        return self.loader.create_module(spec)

    def exec_module(self, module: Any) -> None:
        # give the module its real loader back (inspect, importlib.resources and reload use it)
        module.__loader__ = module.__spec__.loader = self.loader
        self.loader.exec_module(module)
        _remove_finder()  # timm is loaded: fire once
        _register()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.loader, name)


def _remove_finder() -> None:
    sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, _RegisterAfterTimm)]


def register_when_timm_loads() -> None:
    """Register gift_hf's timm architectures now if timm is loaded, else right after it loads."""
    if "timm" in sys.modules:
        _register()
    elif not any(isinstance(finder, _RegisterAfterTimm) for finder in sys.meta_path):
        sys.meta_path.insert(0, _RegisterAfterTimm())
