"""Every model format convertctl reads, for real: models made in the test by
the current torch (tests/formats_make.py), converted through all four modes
on the local runtime, TorchScript and ExportedProgram on Docker too; the
formats that need a flag refused without it; a hostile pickle loaded with
--trust-model in Docker does nothing it tries."""

from __future__ import annotations

import socket
import threading
from pathlib import Path

import pytest
from conftest import convertctl, load_json, requires_docker
from convertctl.errors import EXIT_OK, EXIT_USAGE

pytestmark = pytest.mark.acceptance
ALL = ["fp32", "dynamic", "int8", "fp16"]
ARCH = ["--arch", "formatnets:build", "--arch-kwargs", '{"classes": 7}']


def run(model: Path, out: Path, *extra, modes=ALL, runtime="local"):
    args = ["run", model, "--out", out, "--runtime", runtime, "--latency-runs", "0", *extra]
    for mode in modes:
        args += ["--quant", mode]
    proc = convertctl(*args)
    report = load_json(out / "report.json") if (out / "report.json").exists() else None
    return proc, report


def assert_converted(proc, report, out: Path, stem: str, modes=ALL):
    assert proc.returncode == EXIT_OK, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert report["status"] == "passed"
    for mode in modes:
        assert (out / f"{stem}_{mode}.tflite").stat().st_size > 1000
    checks = {(c["stage"], c["mode"], c["input_set"]): c for c in report["checks"]}
    for mode in modes:
        assert checks[("tflite", mode, "samples")]["status"] == "passed"
    if "fp32" in modes:
        assert checks[("tflite", "fp32", "samples")]["outputs"][0]["max_abs"] <= 1e-4
    if "int8" in modes:
        int8 = next(a for a in report["artifacts"] if a["mode"] == "int8")
        assert [t["dtype"] for t in int8["inputs"] + int8["outputs"]] == ["int8", "int8"]
        assert int8["ops"]["float_ops"] == 0
    return checks


LOCAL_CASES = {
    "torchscript.pt": ("torchscript", ["--input", "image:1,3,16,16"]),
    "program.pt2": ("exported-program", []),  # inputs, names and shapes come from the file
    "weights.pt": ("state-dict", ["--input", "image:1,3,16,16", *ARCH]),
    "checkpoint.pt": ("state-dict", ["--input-shape", "1,3,16,16", *ARCH]),
    "model.onnx": ("onnx", []),  # from the file too
}


@pytest.mark.parametrize("name", sorted(LOCAL_CASES))
def test_each_format_converts_in_all_four_modes_locally(format_models, tmp_path, name):
    fmt, extra = LOCAL_CASES[name]
    if "--arch" in extra:
        extra = [*extra, "--code", format_models / "code"]
    proc, report = run(format_models / name, tmp_path, *extra)
    checks = assert_converted(proc, report, tmp_path, Path(name).stem)
    assert report["model"]["file"]["format"] == fmt
    assert [o["shape"] for o in report["model"]["outputs"]] == [[1, 7]]
    if fmt == "onnx":
        # The ONNX file is its own reference: onnxruntime's outputs, said so everywhere.
        assert report["model"]["reference"] == "onnxruntime"
        assert ("onnx", None, "samples") not in checks, "no ONNX-vs-itself check"
        used = next(e for e in report["ladder"] if e["stage"] == "export" and e["status"] == "used")
        assert "onnxruntime reference on the ONNX model file (opset 11)" in used["purpose"]
        assert "the model is ONNX, not PyTorch" in " ".join(proc.stdout.split())
        assert "the model is ONNX, not PyTorch" in (tmp_path / "report.md").read_text()
        assert "tflite vs onnxruntime" in proc.stdout and "tflite vs torch" not in proc.stdout
        assert [a["inputs"][0]["name"] for a in report["artifacts"]] == ["image"] * 4
        assert {o["name"] for a in report["artifacts"] for o in a["outputs"]} == {"logits"}
    else:
        assert report["model"]["reference"] == "torch"
        assert checks[("onnx", None, "samples")]["outputs"][0]["max_abs"] <= 1e-4
        assert "not PyTorch" not in proc.stdout
    if fmt in ("exported-program", "torchscript") or "--input" in extra:
        assert {a["inputs"][0]["name"] for a in report["artifacts"]} == {"image"}


def test_a_checkpoint_under_model_converts(format_models, tmp_path):
    proc, report = run(
        format_models / "checkpoint_model.pt", tmp_path, "--input-shape", "1,3,16,16", *ARCH, "--code",
        format_models / "code", modes=["fp32"],
    )  # fmt: skip
    assert_converted(proc, report, tmp_path, "checkpoint_model", ["fp32"])


def test_weights_that_do_not_fit_the_arch_are_named(format_models, tmp_path):
    proc, _ = run(
        format_models / "weights.pt", tmp_path, "--input-shape", "1,3,16,16", "--arch", "formatnets:build",
        "--code", format_models / "code", modes=["fp32"],
    )  # fmt: skip
    assert proc.returncode == EXIT_USAGE
    text = " ".join(proc.stdout.split())
    assert "do not fit --arch formatnets:build" in text and "size mismatch for fc.weight" in text


def test_an_arch_module_that_is_not_there_is_named(format_models, tmp_path):
    proc, _ = run(
        format_models / "weights.pt", tmp_path, "--input-shape", "1,3,16,16", "--arch", "nosuchnet:build",
        "--code", format_models / "code", modes=["fp32"],
    )  # fmt: skip
    assert proc.returncode == EXIT_USAGE
    assert "cannot import nosuchnet" in " ".join(proc.stdout.split())


# -- refused before any work ------------------------------------------------


def assert_refused(proc, out: Path, *needles):
    assert proc.returncode == EXIT_USAGE, proc.stdout + proc.stderr
    err = " ".join(proc.stderr.split())
    for needle in needles:
        assert needle in err
    assert "Traceback" not in proc.stdout + proc.stderr
    assert not out.exists() or not any(out.iterdir()), "nothing runs, nothing is written"


def test_a_state_dict_without_arch_is_refused(format_models, tmp_path):
    proc, _ = run(format_models / "weights.pt", tmp_path / "o", "--input-shape", "1,3,16,16")
    assert_refused(proc, tmp_path / "o", "weights.pt: a state_dict/checkpoint", "--arch module:callable", "--code DIR")


def test_a_pickled_module_without_trust_model_is_refused(format_models, tmp_path):
    proc, _ = run(format_models / "pickled.pt", tmp_path / "o", "--input-shape", "1,3,16,16")
    assert_refused(proc, tmp_path / "o", "pickled.pt: a pickled module", "formatnets.Net", "--trust-model")


def test_trust_model_is_refused_on_the_local_runtime(format_models, tmp_path):
    proc, _ = run(format_models / "pickled.pt", tmp_path / "o", "--input-shape", "1,3,16,16", "--trust-model")
    assert_refused(proc, tmp_path / "o", "--trust-model needs --runtime docker")


def test_a_damaged_archive_is_refused(format_models, tmp_path):
    data = bytearray((format_models / "torchscript.pt").read_bytes())
    start = data.index(b"PK\x03\x04") + 30 + 8  # inside the first member's bytes
    data[start + 40] ^= 0xFF
    damaged = tmp_path / "damaged.pt"
    damaged.write_bytes(bytes(data))
    proc, _ = run(damaged, tmp_path / "o", "--input-shape", "1,3,16,16")
    assert_refused(proc, tmp_path / "o", "damaged.pt: a damaged zip archive", "fails its CRC check")


# -- Docker -------------------------------------------------------------------


@pytest.fixture(scope="module")
def current_torch_image():
    """The export-torch2.13 image every test below needs (the only export
    image that reads files saved by a current torch)."""
    proc = convertctl("images", "build", "--variant", "export-torch2.13")
    assert proc.returncode == 0, "the export-torch2.13 image does not build: " + proc.stderr[-2000:]


@pytest.mark.docker
@pytest.mark.current_torch_image
@requires_docker
@pytest.mark.parametrize(
    "name, reason",
    [
        ("torchscript.pt", "the archive has a byteorder record: saved by torch >= 2.1"),
        ("program.pt2", "torch 1.7.1 here does not load ExportedProgram files"),
    ],
)
def test_current_torch_formats_convert_on_docker(current_torch_image, format_models, tmp_path, name, reason):
    extra = ["--input", "image:1,3,16,16"] if name.endswith(".pt") else []
    proc, report = run(format_models / name, tmp_path, *extra, runtime="docker")
    assert_converted(proc, report, tmp_path, Path(name).stem)
    export = [e for e in report["ladder"] if e["stage"] == "export"]
    assert export[0]["variant"] == "export-torch1.7" and export[0]["status"] == "skipped"
    assert reason in export[0]["reason"]
    assert export[1]["variant"] == "export-torch2.13" and export[1]["status"] == "used"
    versions = {s["stage"]: s["versions"] for s in report["stages"]}
    assert versions["export"]["torch"].startswith("2.13")


@pytest.mark.docker
@pytest.mark.current_torch_image
@requires_docker
def test_a_trusted_pickled_module_converts_on_docker(current_torch_image, format_models, tmp_path):
    proc, report = run(
        format_models / "pickled.pt", tmp_path, "--input", "image:1,3,16,16", "--trust-model", "--code",
        format_models / "code", modes=["fp32"], runtime="docker",
    )  # fmt: skip
    assert_converted(proc, report, tmp_path, "pickled", ["fp32"])
    assert report["model"]["file"]["format"] == "pickle"


PAYLOAD = """
import os, socket, sys
said = []
for host in {hosts!r}:
    try:
        socket.create_connection((host, {port}), timeout=3).close()
        said.append("socket %s: CONNECTED" % host)
    except Exception as exc:
        said.append("socket %s: %s" % (host, type(exc).__name__))
for path in {paths!r}:
    try:
        with open(path, "w") as f:
            f.write("escaped")
        said.append("write %s: WROTE" % path)
    except Exception as exc:
        said.append("write %s: %s" % (path, type(exc).__name__))
print("[payload] " + "; ".join(said), flush=True)
"""


class Listener:
    """A TCP listener on every host address: counts who connects."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("0.0.0.0", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.5)
        self.port = self.sock.getsockname()[1]
        self.peers: list = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while not self.stop.is_set():
            try:
                conn, peer = self.sock.accept()
            except OSError:
                continue
            self.peers.append(peer)
            conn.close()

    def close(self):
        self.stop.set()
        self.thread.join(5)
        self.sock.close()


def bridge_gateway(client) -> str:
    """The host as a container on Docker's default network reaches it."""
    import ipaddress

    config = client.networks.get("bridge").attrs["IPAM"]["Config"][0]
    return config.get("Gateway") or str(next(ipaddress.ip_network(config["Subnet"]).hosts()))


def hostile_pickle(path: Path, code: str) -> None:
    """torch.save()'s zip layout, its data.pkl a pickle whose __reduce__ runs ``code``."""
    import pickle
    import zipfile

    class Payload:
        def __reduce__(self):
            return (exec, (code,))

    with zipfile.ZipFile(path, "w") as z:
        z.writestr("hostile/data.pkl", pickle.dumps(Payload(), protocol=2))
        z.writestr("hostile/version", "3\n")
        z.writestr("hostile/byteorder", "little")


@pytest.mark.docker
@pytest.mark.current_torch_image
@requires_docker
def test_a_hostile_pickle_with_trust_model_does_nothing_it_tries(current_torch_image, tmp_path):
    import docker
    from convertctl.config.catalog import load_catalog
    from convertctl.runtimes.images import ImageBuilder
    from convertctl.store.pipconfig import load_settings

    client = docker.from_env()
    listener = Listener()
    escaped = [tmp_path / "escaped.txt", tmp_path.parent / "escaped.txt", Path("/model/escaped.txt")]
    code = PAYLOAD.format(
        hosts=["127.0.0.1", bridge_gateway(client)], port=listener.port, paths=list(map(str, escaped))
    )
    try:
        # Control: the same code in a container that has a network reaches the
        # listener, so "no connection" below is the sandbox, not the test.
        image = ImageBuilder(client, load_settings()).ref(load_catalog().get("export-torch2.13"))
        said = client.containers.run(image, ["-c", code], network_mode="bridge", remove=True).decode()
        assert "CONNECTED" in said, said
        assert listener.peers, "the control container did not reach the listener"
        listener.peers.clear()

        model = tmp_path / "hostile.pt"
        hostile_pickle(model, code)
        out = tmp_path / "out"
        proc, _ = run(model, out, "--input-shape", "1,3,16,16", "--trust-model", modes=["fp32"], runtime="docker")
    finally:
        listener.close()
    assert proc.returncode == EXIT_USAGE, proc.stdout + proc.stderr
    assert "unpickled to a NoneType, not a torch.nn.Module" in " ".join(proc.stdout.split())
    assert not list(out.glob("*.tflite")), "nothing converts"
    # The payload ran (its own words are in the stage log), and failed at both.
    log = next(out.glob(".convertctl/runs/*/export/export-torch2.13/stage.log")).read_text()
    said = next(line for line in log.splitlines() if line.startswith("[payload]"))
    assert "CONNECTED" not in said and "WROTE" not in said, said
    assert said.count("socket ") == 2 and said.count("write ") == 3, said
    assert listener.peers == [], f"the pickle reached the host: {listener.peers}"
    assert not any(p.exists() for p in escaped[:2]), "the pickle wrote outside its run directory"
    report = load_json(next(out.glob(".convertctl/runs/*/report.json")))
    assert report["model"]["file"]["format"] == "pickle"
    assert report["model"]["file"]["globals"] == ["__builtin__.exec"], "what the host saw it would import"
