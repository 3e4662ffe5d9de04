"""What a quantize step is asked to make: the request's mode_spec.

The host sends, next to the mode's name, what the mode needs:
  "mode_spec": {"name": "int8",
                "weights": "float32" | "float16" | "int8" | "int4",
                "activations": "float32" | "int8" | "int16" | "dynamic",
                "calibrated": true | false,
                "granularity": "tensor" | "channel" | "block",
                "block_size": 0 | 32 | ...}
A stage decides from these fields, never from a list of mode names of its
own, and says plainly when its quantizer cannot make a spec. "dynamic"
activations are float in the file and quantized by the kernels at run time.

The modes themselves, with their names, live in the host's registry
(orchestrator/convertctl/config/modes.py): stage code keeps no list of them.
Standard library only; Python 3.8 syntax.
"""
from contract import StageFailure

WEIGHTS = ("float32", "float16", "int8", "int4")
ACTIVATIONS = ("float32", "int8", "int16", "dynamic")
GRANULARITIES = ("tensor", "channel", "block")


def mode_spec(request):
    """The request's mode_spec, checked."""
    spec = request.get("mode_spec")
    name = request.get("mode")
    if not isinstance(spec, dict):
        raise StageFailure("mode %r comes without a mode_spec: this stage code needs the convertctl it came "
                           "with, which sends one" % (name,))
    spec = dict(spec)
    spec.setdefault("name", name)
    spec.setdefault("calibrated", False)
    spec.setdefault("granularity", "channel")
    spec.setdefault("block_size", 0)
    problems = []
    for key, allowed in (("weights", WEIGHTS), ("activations", ACTIVATIONS), ("granularity", GRANULARITIES)):
        if spec.get(key) not in allowed:
            problems.append("%s %r (one of %s)" % (key, spec.get(key), ", ".join(allowed)))
    if not isinstance(spec["block_size"], int) or spec["block_size"] < 0:
        problems.append("block_size %r (a whole number >= 0)" % (spec["block_size"],))
    elif spec["granularity"] == "block" and spec["block_size"] <= 0:
        problems.append("granularity block needs a block_size")
    if spec["activations"] in ("int8", "int16") and not spec["calibrated"]:
        problems.append("activations %s need calibration (calibrated: true)" % spec["activations"])
    if problems:
        raise StageFailure("mode_spec of %s: bad %s" % (spec["name"], "; ".join(problems)))
    return spec


def is_float(spec):
    """Nothing quantized: the float file as it is."""
    return spec["weights"] == "float32" and spec["activations"] == "float32"


def cannot(quantizer, spec, why):
    """The failure every stage gives for a spec its quantizer cannot make."""
    return StageFailure("%s cannot make weights %s with activations %s (%s): %s"
                        % (quantizer, spec["weights"], spec["activations"], spec["name"], why))
