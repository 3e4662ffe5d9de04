"""Environments made once before a local fan-out (and on each Ray node
before its first model): workers then find them instead of racing to build
them."""

from __future__ import annotations

from convertctl.config.options import ENVIRONMENT  # models that share them share one runtime, made ready once


def prepare_local(models: list, say) -> tuple[list, list]:
    """Per set of environment options: the runtime chosen once (auto
    resolved: every model's options then name the runtime it got) and the
    environments its models start with, made now. (runtime names, notices)."""
    from convertctl.api.run import runtime_for
    from convertctl.config.catalog import load_catalog
    from convertctl.run.options import preflight

    catalog = load_catalog()
    groups: dict = {}
    for model in models:
        groups.setdefault(tuple(getattr(model.options, k) for k in ENVIRONMENT), []).append(model)
    names, notices = [], []
    for group in groups.values():
        rt = runtime_for(group[0].options, say)
        try:
            variants: list = []
            for model in group:
                model.options.runtime = rt.name
                preflight(rt, catalog, model.options)  # a pinned variant this machine cannot make: exit 5 now
                convert = catalog.pick(rt.name, "convert", model.options.converter)[:1]
                variants += catalog.pick(rt.name, "export", model.options.export_image)[:1] + convert
                variants += catalog.quantizers(convert[0]) if convert else []
                measurer = catalog.measurer(rt.name)
                if model.options.latency_runs and measurer is not None:
                    variants.append(measurer)
            # Later rungs of a ladder are made by the first worker that needs one, under the store's lock.
            rt.prepare(list(dict.fromkeys(variants)), say)
            names.append(rt.name)
            notices += [n for n in rt.notices if n not in notices]
        finally:
            rt.close()
    return list(dict.fromkeys(names)), notices
