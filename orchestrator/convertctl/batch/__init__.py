"""`convertctl batch`: many models, one command. plan.py makes the list of
models and each one's Options (from paths and flags, or a batch file);
worker.py converts one model in a process of its own; local.py and ray.py
run the workers (a pool on this machine, or tasks on a Ray cluster);
outcome.py and summary.py gather the combined report; matrix.py prints a
GitHub Actions matrix instead of running anything."""

import sys
import types


class _CallableModule(types.ModuleType):
    """`convertctl.batch(...)` is the Python API (api.py) and `convertctl.batch`
    this package: once any module of the package is imported, Python makes the
    package the `batch` attribute of convertctl, so the package itself must be
    what a caller calls."""

    def __call__(self, *args, **kwargs):
        from convertctl.batch.api import batch

        return batch(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
