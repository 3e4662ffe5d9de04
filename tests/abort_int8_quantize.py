"""TEST FIXTURE, not product code: the litert-torch quantize stage, except
that its calibrator kills the process with SIGABRT, as a native crash in a
calibrator does (the ResNet-18 int8 abort of issue 7). Only int8 calibrates,
so only int8 dies; fp32, dynamic and fp16 run the real code unchanged.

tests/test_ladder.py names this script in a catalog of its own
(CONVERTCTL_CATALOG); it runs in the litert-torch venv, like the real stage.
"""

import os
import sys

IMAGES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "images")
sys.path[:0] = [os.path.join(IMAGES, "litert"), os.path.join(IMAGES, "common")]

import contract  # noqa: E402
import quantize  # noqa: E402
from litert_quantizer import calibrator  # noqa: E402


def abort(*args, **kwargs):
    sys.stdout.write("[stage] calibrating: this test fixture aborts the process now\n")
    sys.stdout.flush()
    os.abort()


calibrator.Calibrator.calibrate = abort

if __name__ == "__main__":
    sys.exit(contract.run_stage("quantize", quantize.body))
