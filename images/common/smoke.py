"""Import smoke test of a stage image, run once at build time (images/Dockerfile.template):

    python smoke.py onnx2tf==1.29.24 tensorflow-cpu==2.19.0 ...

The arguments are the variant's `pins` from images/catalog.toml. For each
distribution: it is installed at exactly that version (the catalog and the
lock agree), its modules import (the one named like the distribution, else
every top-level module it installs: tensorflow-cpu installs tensorflow), and
its commands are on PATH (onnx2tf runs onnxsim's). Exit 1 on the first
problem, said in one line. Standard library only, Python 3.8 syntax.
"""
import importlib
import re
import shutil
import sys

try:
    from importlib import metadata
except ImportError:  # pragma: no cover - Python < 3.8 is not supported anyway
    sys.exit("smoke.py needs Python >= 3.8")


def normalized(name):
    return re.sub(r"[-_.]+", "_", name).lower()


def top_level(dist):
    """The importable top-level names a distribution installs."""
    names = set((dist.read_text("top_level.txt") or "").split())
    for f in dist.files or []:
        parts = f.parts
        if not parts or parts[0].endswith((".dist-info", ".data")) or parts[0] in ("..", "bin"):
            continue
        if len(parts) > 1 and parts[1] == "__init__.py":
            names.add(parts[0])
        elif len(parts) == 1 and parts[0].endswith(".py"):
            names.add(parts[0][:-3])
    return sorted(n for n in names if n.isidentifier() and not n.startswith("_") and n not in ("test", "tests"))


def modules(dist):
    tops = top_level(dist)
    own = normalized(dist.metadata["Name"])
    return [own] if own in tops else tops


def check(pin):
    name, _, version = pin.partition("==")
    try:
        dist = metadata.distribution(name)
    except metadata.PackageNotFoundError:
        return "%s is not installed (the catalog pins %s)" % (name, pin)
    if dist.version != version:
        return "%s %s is installed; the catalog pins %s" % (name, dist.version, version)
    for module in modules(dist):
        try:
            importlib.import_module(module)
        except Exception as exc:  # noqa: BLE001 - any import failure fails the image
            return "import %s (%s): %s: %s" % (module, pin, type(exc).__name__, str(exc).splitlines()[0][:300])
    for ep in dist.entry_points:
        if ep.group == "console_scripts" and shutil.which(ep.name) is None:
            return "%s's command %s is not on PATH" % (name, ep.name)
    return ""


def main(pins):
    if not pins:
        sys.exit("usage: smoke.py NAME==VERSION ...")
    for pin in pins:
        problem = check(pin)
        if problem:
            sys.stderr.write("smoke test failed: %s\n" % problem)
            return 1
    print("smoke test ok (Python %s): %s" % (sys.version.split()[0], ", ".join(pins)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
