"""numpy, imported on first use. Most commands never touch an array: a rerun
whose every step comes from the cache, `--help`, `cache list`. Importing
numpy costs them ~50 ms each, a sixth of such a rerun (bench/cache.py).

Modules write `np = lazy.numpy` (and import numpy under TYPE_CHECKING for
the type checker); `np.anything` imports it then."""

from __future__ import annotations

import importlib
from types import ModuleType


class LazyModule:
    def __init__(self, name: str):
        self._name = name
        self._module: ModuleType | None = None

    def __getattr__(self, attr: str):
        if self._module is None:
            self._module = importlib.import_module(self._name)
        return getattr(self._module, attr)


numpy = LazyModule("numpy")
