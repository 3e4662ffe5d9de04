"""convertctl.convert() called from a torch user's Python: an in-memory
nn.Module and an ExportedProgram. Runs INSIDE a torch environment (the
local export venv: the host test process has no torch), with convertctl
importable from the checkout and its host dependencies (rich, typer,
pillow) from the test's own environment, appended after the venv's own
packages so that torch keeps the numpy it was built with: what a user who
installed convertctl beside torch has.

    python api_in_torch.py OUT_DIR ORCHESTRATOR_DIR HOST_SITE_PACKAGES

Prints one JSON object: each Result as the test checks it."""

import json
import sys

out, orchestrator, host_site = sys.argv[1:4]
sys.path.insert(0, orchestrator)
sys.path.append(host_site)

import convertctl  # noqa: E402
import torch  # noqa: E402  (the caller's torch)
from torch import nn  # noqa: E402

light = "convertctl.api.run" not in sys.modules


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 8, 3, stride=2, padding=1)
        self.fc = nn.Linear(8, 5)

    def forward(self, image):
        x = torch.relu(self.bn(self.conv(image)))
        x = torch.relu(self.conv2(x))
        return self.fc(x.mean((2, 3)))


torch.manual_seed(0)
net = Net().train()
with torch.no_grad():  # BatchNorm statistics from data, so activations have a range int8 can hold
    for _ in range(5):
        net(torch.randn(8, 3, 16, 16))
net.eval()


def as_dict(result):
    return {
        "repr": repr(result),
        "status": result.status,
        "exit_code": result.exit_code,
        "failure": result.failure,
        "report": str(result.report_path),
        "model": result.report.model,
        "ladder": [r.variant + ":" + r.status for r in result.ladder],
        "html": result._repr_html_(),
        "files": {
            mode: {
                "path": f.path,
                "sha256": f.sha256,
                "size_bytes": f.size_bytes,
                "passed": f.passed,
                "variant": f.variant,
                "latency_ms": f.latency_ms,
                "agreement": f.agreement,
                "accuracy": f.accuracy,
                "float_layers": list(f.float_layers),
                "layer_errors": len(f.layer_errors.get("layers", [])),
            }
            for mode, f in result.files.items()
        },
    }


module = convertctl.convert(
    net,
    inputs=[torch.randn(1, 3, 16, 16)],
    quant=["fp32", "dynamic", "int8", "fp16"],
    out=out + "/module",
    runtime="local",
    latency_runs=3,
    int8_float_layers="auto",
    say=lambda line: print(line, file=sys.stderr),
)
program = convertctl.convert(
    torch.export.export(net, (torch.randn(1, 3, 16, 16),)),
    quant="fp16",
    out=out + "/program",
    name="prog",
    runtime="local",
    latency_runs=0,
)
print(json.dumps({"light": light, "module": as_dict(module), "program": as_dict(program)}))
