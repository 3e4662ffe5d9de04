"""Loading the user's model inside a torch environment, whatever its format.

Shared by every stage script that needs the PyTorch model (the export stage,
and converter families that start from torch): ``load_model(torch, request)``.
Request fields:
  model         the model file (absolute: mounted, not copied)
  model_format  torchscript | exported-program | state-dict | pickle (the host
                detected it from the file's layout, without loading it)
  arch          "module:callable" building the nn.Module a state_dict fits
  arch_kwargs   {name: value} passed to that callable
  code_dir      the folder holding that module (read-only in Docker)
  trusted       a pickled module may be unpickled (--trust-model; the host
                allows it on the Docker runtime only)

A state_dict or checkpoint is loaded with weights_only=True: tensors and
plain containers, never code. Python 3.8 syntax; torch 1.7 loads TorchScript
only (the catalog's `formats` keeps the other formats away from it).
"""
import importlib
import inspect
import os
import sys

from contract import InputProblem, StageFailure, log

# Where a checkpoint keeps its weights, tried in this order.
CHECKPOINT_KEYS = ("state_dict", "model_state_dict", "model", "net", "module")


def first_line(exc):
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def probe_load(torch, path):
    """Older torch aborts the whole process (no exception) on TorchScript
    written by a newer torch. Try the load in a forked child first, so the
    user gets an explanation instead of a core dump."""
    if not hasattr(os, "fork"):
        return
    pid = os.fork()
    if pid == 0:  # child: report by exit status only
        try:
            torch.jit.load(path, map_location="cpu")
            os._exit(0)
        except BaseException:  # noqa: BLE001 - the parent loads again and reports
            os._exit(3)
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        raise InputProblem("torch %s crashed loading %s (signal %d). TorchScript saved by a newer torch "
                           "does not load in an older one: save the model with torch <= %s, or pick an "
                           "export image with a newer torch (--export-image)."
                           % (torch.__version__, path, os.WTERMSIG(status), torch.__version__.split("+")[0]))


def load_torchscript(torch, path):
    probe_load(torch, path)
    try:
        model = torch.jit.load(path, map_location="cpu")
    except Exception as exc:  # noqa: BLE001 - torch raises many kinds here
        raise InputProblem("%s is not a TorchScript file torch %s can load (%s). Save it with "
                           "torch.jit.save(torch.jit.script(model) or torch.jit.trace(model, x), path)."
                           % (path, torch.__version__, first_line(exc)))
    model.eval()
    return model


class _NoCode(object):
    """While an ExportedProgram loads: torch.load only as tensors and plain data
    (weights_only=True), and no plain pickle at all. torch.export.load unpickles
    sample inputs and some constants with weights_only=False, which runs whatever
    a pickle names; the host refuses such archives before any stage runs, and this
    holds even if a file got past it."""

    def __init__(self, torch):
        import pickle
        self.torch, self.pickle = torch, pickle
        self.saved = (torch.load, pickle.loads)

    def __enter__(self):
        torch_load = self.saved[0]

        def load(f, *args, **kwargs):
            kwargs["weights_only"] = True
            return torch_load(f, *args, **kwargs)

        def refuse(*args, **kwargs):
            raise InputProblem("the ExportedProgram holds a plain pickle (an opaque object); convertctl does not "
                               "unpickle those, since loading one runs code")

        self.torch.load, self.pickle.loads = load, refuse
        return self

    def __exit__(self, *exc):
        self.torch.load, self.pickle.loads = self.saved
        return False


def load_exported_program(torch, path):
    if not hasattr(torch, "export"):
        raise StageFailure("torch %s has no torch.export" % torch.__version__)
    try:
        with _NoCode(torch):
            program = torch.export.load(path)
    except InputProblem:
        raise
    except Exception as exc:  # noqa: BLE001
        raise InputProblem("%s is an ExportedProgram torch %s cannot load (%s). Save it again with this torch, "
                           "or pick an export image with the torch that saved it (--export-image)."
                           % (path, torch.__version__, first_line(exc)))
    module = program.module()
    # The program was captured in whatever mode the model was in; its module
    # refuses train()/eval() (NotImplementedError), which torch's TorchScript
    # ONNX exporter calls. Nothing in the graph depends on that flag any more.
    module.train = lambda mode=True: module
    return module


def _load_weights(torch, path):
    if "weights_only" not in inspect.signature(torch.load).parameters:
        raise StageFailure("torch %s has no weights_only loading: it cannot load a state_dict without "
                           "running the code in it" % torch.__version__)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001
        raise InputProblem("%s does not load as tensors only (weights_only=True): %s. A checkpoint that holds "
                           "other objects needs --trust-model (Docker only)." % (path, first_line(exc)))


def _is_state_dict(torch, obj):
    return isinstance(obj, dict) and bool(obj) and all(torch.is_tensor(v) for v in obj.values())


def unwrap_state_dict(torch, obj, path):
    """The tensors of a state_dict, or of a checkpoint that holds one under a
    usual key ({"state_dict": ...}, {"model": ...}); DataParallel's "module."
    prefixes dropped."""
    where = "the file"
    if not _is_state_dict(torch, obj):
        if not isinstance(obj, dict):
            raise InputProblem("%s holds a %s, not a state_dict or a checkpoint dict" % (path, type(obj).__name__))
        for key in CHECKPOINT_KEYS:
            if _is_state_dict(torch, obj.get(key)):
                obj, where = obj[key], "the checkpoint's %r entry" % key
                break
        else:
            raise InputProblem("%s is a dict with keys %s; none of them (%s) holds a state_dict of tensors"
                               % (path, ", ".join(repr(k) for k in list(obj)[:10]), ", ".join(CHECKPOINT_KEYS)))
    if all(k.startswith("module.") for k in obj):
        obj = dict((k[len("module."):], v) for k, v in obj.items())
    log("weights: %d tensors from %s" % (len(obj), where))
    return obj


def build_arch(request):
    """The nn.Module named by --arch module:callable, built with --arch-kwargs,
    the module imported from --code DIR."""
    arch = request.get("arch") or ""
    module_name, _, attr = arch.partition(":")
    if not module_name or not attr:
        raise InputProblem("--arch %r: expected module:callable, e.g. mynet:build_model" % arch)
    code_dir = request.get("code_dir")
    if code_dir:
        sys.path.insert(0, code_dir)
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # noqa: BLE001 - the user's code may raise anything
        where = ("in --code %s" % code_dir) if code_dir else "(no --code folder given)"
        raise InputProblem("--arch %s: cannot import %s %s: %s: %s"
                           % (arch, module_name, where, type(exc).__name__, first_line(exc)))
    factory = module
    for part in attr.split("."):
        factory = getattr(factory, part, None)
        if factory is None:
            raise InputProblem("--arch %s: %s has no %s" % (arch, module_name, attr))
    kwargs = request.get("arch_kwargs") or {}
    try:
        return factory(**kwargs)
    except Exception as exc:  # noqa: BLE001
        raise InputProblem("--arch %s: %s(**%r) failed: %s: %s" % (arch, attr, kwargs, type(exc).__name__,
                                                                  first_line(exc)))


def load_state_dict(torch, path, request, obj=None):
    weights = unwrap_state_dict(torch, _load_weights(torch, path) if obj is None else obj, path)
    if not request.get("arch"):
        raise InputProblem("%s is a state_dict: give the architecture with --arch module:callable and --code DIR"
                           % path)
    model = build_arch(request)
    if not isinstance(model, torch.nn.Module):
        raise InputProblem("--arch %s returned a %s, not a torch.nn.Module" % (request["arch"], type(model).__name__))
    try:
        model.load_state_dict(weights, strict=True)
    except RuntimeError as exc:
        raise InputProblem("the weights in %s do not fit --arch %s: %s"
                           % (path, request["arch"], " ".join(str(exc).split())[:600]))
    model.eval()
    return model


def load_pickled(torch, path, request):
    """A whole pickled module: unpickling runs code, so only when the user
    said --trust-model (the host allows it in a locked-down container only)."""
    if not request.get("trusted"):
        raise InputProblem("%s is a pickled module; loading it runs code from the file. Pass --trust-model "
                           "(Docker runtime only) if you trust it." % path)
    if request.get("code_dir"):
        sys.path.insert(0, request["code_dir"])  # the classes the pickle names
    kwargs = {"weights_only": False} if "weights_only" in inspect.signature(torch.load).parameters else {}
    try:
        obj = torch.load(path, map_location="cpu", **kwargs)
    except Exception as exc:  # noqa: BLE001
        raise InputProblem("%s did not unpickle: %s: %s (are its classes in --code DIR?)"
                           % (path, type(exc).__name__, first_line(exc)))
    if isinstance(obj, torch.nn.Module):
        obj.eval()
        return obj
    if isinstance(obj, dict) and request.get("arch"):
        return load_state_dict(torch, path, request, obj)
    raise InputProblem("%s unpickled to a %s, not a torch.nn.Module (a checkpoint dict needs --arch)"
                       % (path, type(obj).__name__))


def load_model(torch, request):
    """The user's model, in eval mode, ready to call and to export."""
    fmt = request.get("model_format") or "torchscript"
    path = request["model"]
    if fmt == "torchscript":
        return load_torchscript(torch, path)
    if fmt == "exported-program":
        return load_exported_program(torch, path)
    if fmt == "state-dict":
        return load_state_dict(torch, path, request)
    if fmt == "pickle":
        return load_pickled(torch, path, request)
    if fmt == "onnx":
        raise StageFailure("%s is an ONNX file: torch does not load it" % path)
    raise StageFailure("unknown model format %r" % fmt)


def input_names(model):
    """The names forward() gives its inputs, where the model says them."""
    try:
        schema = model.forward.schema  # TorchScript
        return [a.name for a in schema.arguments][1:]
    except AttributeError:
        pass
    try:
        params = inspect.signature(model.forward).parameters.values()
    except (TypeError, ValueError):
        return None
    names = [p.name for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return names or None
