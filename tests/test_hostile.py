"""What a hostile (or unlucky) user tries, as a table run through the real
CLI. Every row asserts the exit code, exactly one message naming the
culprit, no traceback, --out untouched (a failing run may only add its own
run directory, private to it), and nothing written under HOME, the XDG
directories or TMPDIR: the CLI runs with all of them pointed at empty
folders, and only the environment store (CONVERTCTL_HOME, the real one, so
no venv is rebuilt) may be written.

Most rows stop on the host within a second or two, before any stage; the
rows marked acceptance run real stages in the store's venvs."""

from __future__ import annotations

import fcntl
import json
import os
import stat
import subprocess
import sys
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from conftest import convertctl
from convertctl.store.envstore import MARKER, EnvStore, default_root
from test_envstore import SIX16

SHAPE = (20, 3, 8, 8)  # 20 samples of a 1,3,8,8 input
RNG = np.random.default_rng(0)


def good(n=20, shape=(3, 8, 8)):
    return RNG.standard_normal((n, *shape)).astype(np.float32)


def poisoned(value, n=20, where=(3, 1, 2, 2)):
    arr = good(n)
    arr[where] = value
    return arr


def npy(arr, **kw) -> Callable:
    return lambda path: np.save(path, arr, **kw)


def npz(**arrays) -> Callable:
    return lambda path: np.savez(path, **arrays)


def torchscript_zip(path: Path, weights: bytes = b"\x00" * 4096) -> None:
    """The layout torch.jit.save writes (stored, not compressed)."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        z.writestr("net/code/__torch__.py", "def forward(self, x): return x\n")
        z.writestr("net/data/0", weights)
        z.writestr("net/version", "3\n")


def corrupted(path: Path) -> None:
    """A weight byte flipped after saving: the zip still opens."""
    torchscript_zip(path, bytes(range(256)) * 16)
    data = bytearray(path.read_bytes())
    at = data.find(bytes(range(32)))
    data[at + 7] ^= 0xFF
    path.write_bytes(bytes(data))


def truncated(path: Path) -> None:
    torchscript_zip(path)
    path.write_bytes(path.read_bytes()[:-200])


def torch_save_pickle(path: Path) -> None:
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("net/data.pkl", b"\x80\x02}q\x00.")
        z.writestr("net/version", "3\n")


def images(count: int) -> Callable:
    def write(folder: Path) -> None:
        from PIL import Image

        folder.mkdir()
        for i in range(count):
            Image.fromarray(np.full((8, 8, 3), 40 * i, dtype=np.uint8)).save(folder / f"{i}.png")

    return write


@dataclass
class Row:
    id: str
    args: list = field(default_factory=list)
    code: int = 2
    says: tuple = ()  # all in the one error message (or the FAILED line of a report)
    toml: str = ""
    files: dict = field(default_factory=dict)  # name in the world folder -> writer(path)
    shape: bool = True  # pass --input-shape 1,3,8,8
    runtime: str = "local"
    env: dict = field(default_factory=dict)
    model: Callable | str = torchscript_zip  # a writer, or "smallcnn" (the real example model)
    command: tuple = ("run",)
    run_dir: bool = False  # a run that got under way keeps its (private) run directory in --out
    setup: Callable | None = None  # (world) -> extra env
    check: Callable | None = None  # (proc, world) -> extra assertions
    slow: bool = False  # real stages
    needs_root: bool = False


NO_DAEMON = {"DOCKER_HOST": "unix:///nonexistent/docker.sock"}


# ---- setups and checks for the rows that need more than files ------------
def held_store(state: str):
    """A store (CONVERTCTL_HOME) with one environment in the given state;
    for "building", its lock is held by this test process meanwhile."""

    def setup(world: Path) -> dict:
        env = world / "store" / "envs" / "py3.11-0123456789abcdef"
        (env / "bin").mkdir(parents=True)
        if state == "broken":  # its base interpreter is gone
            (env / MARKER).write_text(json.dumps({"variant": "export-torch2.13"}))
            (env / "bin" / "python").symlink_to("/nonexistent/python3.11")
        if state == "in-use":  # ready, and a run's stage is running in it
            (env / MARKER).write_text(json.dumps({"variant": "export-torch2.13"}))
            (env / "bin" / "python").symlink_to(os.path.realpath(sys.executable))
        if state in ("building", "in-use"):
            handle = open(str(env) + ".lock", "a")
            fcntl.flock(handle, fcntl.LOCK_EX if state == "building" else fcntl.LOCK_SH)
            HELD.append(handle)
        return {"CONVERTCTL_HOME": str(world / "store")}

    return setup


HELD: list = []


def stdout_has(*needles):
    def check(proc, world):
        for needle in needles:
            assert needle in proc.stdout, proc.stdout

    return check


def env_still_there(proc, world):
    assert (world / "store" / "envs" / "py3.11-0123456789abcdef").is_dir(), "an env being built was deleted"
    assert "left alone" in proc.stdout


def warned_once(proc, world):
    assert proc.stderr.count("WITHOUT the container sandbox") == 1, proc.stderr


def report_says(**expected):
    def check(proc, world):
        report = json.loads(next((world / "out" / ".convertctl" / "runs").glob("*/report.json")).read_text())
        for key, value in expected.items():
            assert report[key] == value, (key, report[key])

    return check


def tolerance_as_set(proc, world):
    report = json.loads(next((world / "out" / ".convertctl" / "runs").glob("*/report.json")).read_text())
    fp16 = next(c for c in report["checks"] if c["stage"] == "tflite" and c["mode"] == "fp16")
    assert (fp16["tolerance"]["atol"], fp16["tolerance"]["rtol"]) == (1e-7, 0.0)
    assert "bound atol 1e-07 + rtol 0" in proc.stdout.replace("\n", " ").replace("│", " ").replace("  ", " ")


def python39_missing() -> bool:
    return bool(EnvStore().find_python("3.9")[1])


def tiny_disk(world: Path) -> dict:
    out = world / "out"
    if os.getuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=96k", "tmpfs", str(out)]).returncode:
        pytest.skip("needs root and mount(8) to make a full disk")
    MOUNTS.append(out)
    (out / "keep.txt").write_text("earlier")
    return {}


MOUNTS: list = []

ROWS = [
    # -- convertctl.toml: one schema, strict types --------------------------------
    Row("toml-allow-flex-string", toml='allow_flex = "no"', says=("convertctl.toml", "allow_flex", "true or false")),
    Row("toml-mean-text", toml='mean = "abc"', says=("convertctl.toml", "mean", "numbers")),
    Row("toml-mean-nan", toml="mean = [0.5, nan, 0.5]", says=("convertctl.toml", "mean", "finite")),
    Row("toml-quant-int", toml="quant = 5", says=("convertctl.toml", "quant", "a mode")),
    Row("toml-shape-int", toml="input_shape = 32", shape=False, says=("convertctl.toml", "input_shape", "a shape")),
    Row("toml-opset-word", toml='opset = "eleven"', says=("convertctl.toml", "opset", "whole number from 7 to 20")),
    Row("toml-tolerance-number", toml="[tolerance]\nfp32 = 0.5", says=("convertctl.toml", "tolerance.fp32", "table")),
    Row("toml-tolerance-mode", toml="[tolerance.fp17]\natol = 1", says=("tolerance.fp17", "unknown mode")),
    Row("toml-atol-negative", toml="[tolerance.fp16]\natol = -1", says=("tolerance.fp16.atol", ">= 0")),
    Row("toml-calib-int", toml="calib = 5", says=("convertctl.toml", "calib", "a path")),
    Row("toml-budget-text", toml='[max_accuracy_drop]\nint8 = "2"', says=("max_accuracy_drop.int8", "number")),
    Row("toml-runtime", toml='runtime = "podman"', says=("convertctl.toml", "runtime", "auto, local or docker")),
    Row("toml-std-zero", toml="std = [0.2, 0.0, 0.2]", says=("convertctl.toml", "std", "> 0")),
    Row("toml-unknown-key", toml='input_shap = "1,3,8,8"', says=("convertctl.toml", "unknown setting", "input_shap")),
    Row("toml-syntax", toml="quant = [fp32", says=("convertctl.toml", "not valid TOML")),
    # -- numeric and named flags ------------------------------------------------
    Row("opset-zero", args=["--opset", "0"], says=("--opset 0", "7 to 20")),
    Row("opset-huge", args=["--opset", "99"], says=("--opset 99", "7 to 20")),
    Row("samples-zero", args=["--samples", "0"], says=("--samples 0", "1 to 10000")),
    Row("samples-negative", args=["--samples", "-5"], says=("--samples -5",)),
    Row("threads-zero", args=["--threads", "0"], says=("--threads 0", "1 to 256")),
    Row("latency-negative", args=["--latency-runs", "-1"], says=("--latency-runs -1",)),
    Row("seed-negative", args=["--seed", "-1"], says=("--seed -1",)),
    Row(
        "shape-too-big",
        args=["--input-shape", "1,3,20000,20000"],
        shape=False,
        says=("--input-shape '1,3,20000,20000'", "values per sample"),
    ),
    Row("shape-zero", args=["--input-shape", "1,0,8,8"], shape=False, says=("--input-shape '1,0,8,8'", "> 0")),
    Row("shape-text", args=["--input-shape", "1,3,x"], shape=False, says=("--input-shape '1,3,x'",)),
    Row(
        "inputs-too-big-for-memory",
        args=["--input-shape", "1,3,1024,1024", "--samples", "1000"],
        shape=False,
        says=("--input-shape 1,3,1024,1024", "GB", "--samples"),
    ),
    Row("drop-negative", args=["--max-accuracy-drop", "-1"], says=("--max-accuracy-drop", "0 to 100")),
    Row("drop-over-100", args=["--max-accuracy-drop", "int8=150"], says=("--max-accuracy-drop", "0 to 100")),
    Row("atol-negative", args=["--atol", "fp16=-0.001"], says=("--atol", ">= 0")),
    Row("atol-nan", args=["--atol", "nan"], says=("--atol 'nan'", "finite")),
    Row("atol-unknown-mode", args=["--atol", "fp17=1"], says=("--atol 'fp17=1'", "unknown mode")),
    Row("rtol-text", args=["--rtol", "fp16=abc"], says=("--rtol 'fp16=abc'", "NUMBER")),
    Row("mean-text", args=["--mean", "abc"], says=("--mean 'abc'", "numbers")),
    Row("std-zero", args=["--std", "0,1,1"], says=("--std '0,1,1'", "> 0")),
    Row("layout-unknown", args=["--layout", "xyz"], says=("--layout xyz", "nchw or nhwc")),
    Row("quant-unknown", args=["--quant", "int4"], says=("--quant int4", "unknown mode")),
    Row(
        "calib-without-int8",
        args=["--calib", "{w}/calib.npy"],
        files={"calib.npy": npy(good())},
        says=("--calib", "calib.npy", "int8"),
    ),
    # -- data, checked on the host before any stage -------------------------------
    Row(
        "calib-nan",
        ["-q", "int8", "--calib", "{w}/c.npy"],
        files={"c.npy": npy(poisoned(np.nan))},
        says=("c.npy", "NaN"),
    ),
    Row(
        "calib-inf",
        ["-q", "int8", "--calib", "{w}/c.npy"],
        files={"c.npy": npy(poisoned(np.inf))},
        says=("c.npy", "infinite"),
    ),
    Row(
        "calib-all-nan",
        ["-q", "int8", "--calib", "{w}/c.npy"],
        files={"c.npy": npy(np.full(SHAPE, np.nan, dtype=np.float32))},
        says=("c.npy", "NaN", "finite"),
    ),
    Row(
        "calib-float64-overflow",
        ["-q", "int8", "--calib", "{w}/c.npy"],
        files={"c.npy": npy(np.full(SHAPE, 1e300))},
        says=("c.npy", "infinite"),
    ),
    Row(
        "calib-strings",
        ["-q", "int8", "--calib", "{w}/c.npy"],
        files={"c.npy": npy(np.full(SHAPE, "abc"))},
        says=("c.npy", "strings"),
    ),
    Row(
        "calib-complex",
        ["-q", "int8", "--calib", "{w}/c.npy"],
        files={"c.npy": npy(good().astype(np.complex64) * 1j)},
        says=("c.npy", "complex"),
    ),
    Row(
        "calib-too-few",
        ["-q", "int8", "--calib", "{w}/c.npy"],
        files={"c.npy": npy(good(3))},
        says=("c.npy", "at least 10"),
    ),
    Row(
        "calib-wrong-shape",
        ["-q", "int8", "--calib", "{w}/c.npy"],
        files={"c.npy": npy(good(20, (3, 9, 9)))},
        says=("c.npy", "shape [20, 3, 9, 9]"),
    ),
    Row(
        "calib-images-too-few",
        ["-q", "int8", "--calib", "{w}/imgs"],
        files={"imgs": images(2)},
        says=("imgs", "at least 10"),
    ),
    Row("calib-missing", ["-q", "int8", "--calib", "{w}/none"], says=("none", "calibration data not found")),
    Row(
        "samples-nan",
        ["--sample-inputs", "{w}/s.npz"],
        files={"s.npz": npz(input=poisoned(np.nan))},
        says=("s.npz", "NaN"),
    ),
    Row(
        "samples-empty",
        ["--sample-inputs", "{w}/s.npz"],
        files={"s.npz": npz(input=np.zeros((0, 3, 8, 8), np.float32))},
        says=("s.npz", "no samples"),
    ),
    Row(
        "samples-pickled-objects",
        ["--sample-inputs", "{w}/s.npy"],
        files={"s.npy": npy(np.array([{"x": 1}] * 20, dtype=object), allow_pickle=True)},
        says=("s.npy", "cannot read"),
    ),
    Row(
        "samples-truncated-npz",
        ["--sample-inputs", "{w}/s.npz"],
        files={"s.npz": lambda p: (npz(input=good())(p), p.write_bytes(p.read_bytes()[:300]))},
        says=("s.npz", "cannot read"),
    ),
    Row(
        "eval-negative-labels",
        ["--eval-data", "{w}/e.npz"],
        files={"e.npz": npz(x=good(), y=np.arange(20) - 5)},
        says=("e.npz", "negative labels"),
    ),
    Row(
        "eval-fractional-labels",
        ["--eval-data", "{w}/e.npz"],
        files={"e.npz": npz(x=good(), y=np.linspace(0, 3, 20))},
        says=("e.npz", "whole numbers"),
    ),
    Row(
        "eval-string-labels",
        ["--eval-data", "{w}/e.npz"],
        files={"e.npz": npz(x=good(), y=np.array(["cat"] * 20))},
        says=("e.npz", "strings"),
    ),
    Row(
        "eval-nan-images",
        ["--eval-data", "{w}/e.npz"],
        files={"e.npz": npz(x=poisoned(np.nan), y=np.zeros(20, int))},
        says=("e.npz", "NaN"),
    ),
    Row(
        "eval-length-mismatch",
        ["--eval-data", "{w}/e.npz"],
        files={"e.npz": npz(x=good(), y=np.zeros(7, int))},
        says=("e.npz", "20 samples but 'y' 7 labels"),
    ),
    # -- the model file ----------------------------------------------------------
    Row("model-crc-damaged", model=corrupted, says=("net.pt", "CRC")),
    Row("model-truncated", model=truncated, says=("net.pt", "not a model file convertctl reads")),
    Row("model-state-dict-without-arch", model=torch_save_pickle, says=("net.pt", "--arch module:callable")),
    Row("model-missing", model=lambda p: None, says=("net.pt", "no such file")),
    # -- environments and runtimes ----------------------------------------------------
    Row(
        "docker-without-daemon", runtime="docker", env=NO_DAEMON, code=5, says=("--runtime docker", "no Docker daemon")
    ),
    Row(
        "auto-without-daemon-warns-once",
        ["--sample-inputs", "{w}/s.npz"],
        runtime="auto",
        env=NO_DAEMON,
        files={"s.npz": npz(input=poisoned(np.nan))},
        says=("s.npz", "NaN"),
        check=warned_once,
    ),
    Row(
        "variant-python-missing-locally",
        ["--convert-image", "convert-tf2.8"],
        code=5,
        says=("convert-tf2.8 needs Python 3.9", "convert-tf2.15", "--runtime docker"),
    ),
    Row(
        "images-list-without-daemon",
        command=("images", "list"),
        shape=False,
        runtime="",
        env={**NO_DAEMON, "COLUMNS": "250"},
        code=0,
        check=stdout_has("export-torch1.7", "convert-tf2.8", "quantize-tf2.15"),
    ),
    Row(
        "envs-list-shows-building",
        command=("envs", "list"),
        shape=False,
        runtime="",
        code=0,
        setup=held_store("building"),
        check=stdout_has("building"),
    ),
    Row(
        "envs-prune-leaves-a-building-env",
        command=("envs", "prune", "--all"),
        shape=False,
        runtime="",
        code=0,
        setup=held_store("building"),
        check=env_still_there,
    ),
    Row(
        "envs-prune-leaves-an-env-in-use",
        command=("envs", "prune", "--all"),
        shape=False,
        runtime="",
        code=0,
        setup=held_store("in-use"),
        check=env_still_there,
    ),
    Row(
        "envs-list-shows-broken-interpreter",
        command=("envs", "list"),
        shape=False,
        runtime="",
        code=0,
        setup=held_store("broken"),
        check=stdout_has("BROKEN"),
    ),
    Row(
        "out-is-a-file",
        args=["--out", "{w}/file"],
        files={"file": lambda p: p.write_text("precious")},
        says=("file", "not a directory"),
        check=lambda proc, world: (world / "file").read_text() == "precious" or pytest.fail("--out file changed"),
    ),
    Row(
        "disk-full",
        args=["--input-shape", "1,3,64,64"],
        shape=False,
        code=5,
        says=("no space left", "/out/.convertctl/runs/"),
        run_dir=True,
        setup=tiny_disk,
        check=report_says(exit_code=5, status="failed"),
        needs_root=True,
    ),
    # -- rows that run real stages ------------------------------------------------
    Row("export-stage-cannot-load", code=2, says=("net.pt",), run_dir=True, slow=True, check=report_says(exit_code=2)),
    Row(
        "atol-means-what-it-says",
        ["-q", "fp16", "--atol", "fp16=1e-7"],
        model="smallcnn",
        shape=False,
        code=4,
        says=("fp16", "1e-07"),
        run_dir=True,
        slow=True,
        check=tolerance_as_set,
    ),
    Row(
        "eval-label-out-of-range",
        ["--input-shape", "1,3,64,64", "--eval-data", "{w}/e.npz"],
        model="smallcnn",
        shape=False,
        files={"e.npz": npz(x=good(20, (3, 64, 64)), y=np.arange(20) % 11)},
        code=2,
        says=("e.npz", "label 10", "10 classes"),
        run_dir=True,
        slow=True,
    ),
]
for _row in ROWS:
    if _row.id == "atol-means-what-it-says":
        _row.args = ["--input-shape", "1,3,64,64", *_row.args]


def params():
    out = []
    for row in ROWS:
        marks = [pytest.mark.acceptance] if row.slow else []
        if row.id == "variant-python-missing-locally":
            marks.append(pytest.mark.skipif(not python39_missing(), reason="Python 3.9 is installed here"))
        out.append(pytest.param(row, id=row.id, marks=marks))
    return out


def files_under(folder: Path) -> list:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


@pytest.fixture
def world(tmp_path):
    yield tmp_path
    while HELD:
        HELD.pop().close()
    while MOUNTS:
        subprocess.run(["umount", "-l", str(MOUNTS.pop())])


@pytest.mark.parametrize("row", params())
def test_hostile_input(row: Row, world: Path, request):
    home, tmp = world / "home", world / "tmp"
    for folder in (home, tmp, world / "out"):
        folder.mkdir()
    (world / "out" / "keep.txt").write_text("earlier")
    env = {
        "HOME": str(home),
        "XDG_CACHE_HOME": str(home / ".cache"),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_DATA_HOME": str(home / ".local" / "share"),
        "XDG_STATE_HOME": str(home / ".local" / "state"),
        "TMPDIR": str(tmp),
        "CONVERTCTL_HOME": str(default_root()),  # the real store: venvs are reused, never rebuilt
        **row.env,
    }
    user_pip = Path(os.path.expanduser("~/.config/pip/pip.conf"))
    if user_pip.is_file():  # pip's settings as the user has them, although HOME moved
        env["PIP_CONFIG_FILE"] = str(user_pip)
    if row.setup:
        env.update(row.setup(world))
    if row.toml:
        (world / "convertctl.toml").write_text(row.toml + "\n")
    for name, write in row.files.items():
        write(world / name)
    model = world / "net.pt"
    if row.model == "smallcnn":
        model.write_bytes(request.getfixturevalue("smallcnn").read_bytes())
    else:
        row.model(model)
    before = {p: p.read_bytes() for p in (world / "out").rglob("*") if p.is_file()}

    args = [a.replace("{w}", str(world)) for a in row.args]
    if row.command == ("run",):
        args = [
            "run",
            str(model),
            *(["--input-shape", "1,3,8,8"] if row.shape else []),
            "--out",
            str(world / "out"),
            *args,
        ]
    else:
        args = [*row.command, *args]
    if row.runtime:
        args += ["--runtime", row.runtime]
    proc = convertctl(*args, cwd=world, env=env)

    said = proc.stdout + proc.stderr
    assert proc.returncode == row.code, said
    assert "Traceback" not in said and "internal error" not in said
    flat = " ".join(said.replace("│", " ").split())
    if row.code not in (0, 3, 4) and not row.run_dir:
        errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
        assert len(errors) == 1, proc.stderr
    for needle in row.says:
        assert needle in flat, f"{needle!r} not in: {flat[-1500:]}"

    # --out: nothing changed; a run that got under way adds only its private run dir
    after = {p: p.read_bytes() for p in (world / "out").rglob("*") if p.is_file() and ".convertctl" not in p.parts}
    assert after == {p: b for p, b in before.items() if ".convertctl" not in p.parts}, "a failed run changed --out"
    runs = world / "out" / ".convertctl" / "runs"
    if row.run_dir:
        (kept,) = list(runs.iterdir())
        assert stat.S_IMODE(kept.stat().st_mode) == 0o700, "run directories are private"
        assert str(kept) in flat, "the kept run directory is named"
    else:
        assert not (world / "out" / ".convertctl").exists(), "refused before any run directory was made"
    # nothing outside the run directory (and the store)
    assert files_under(home) == [] and files_under(tmp) == [], (files_under(home), files_under(tmp))
    if row.check:
        row.check(proc, world)


def test_a_venv_whose_interpreter_is_gone_is_rebuilt(tmp_path):
    """Marker present, interpreter gone (its base Python removed): rebuilt,
    not a bare FileNotFoundError at the first stage."""
    from convertctl.config.catalog import Variant
    from convertctl.store.pipconfig import load_settings

    lock = tmp_path / "tiny.txt"
    lock.write_text(SIX16)  # locks are hash-checked
    py = f"{sys.version_info.major}.{sys.version_info.minor}"
    variant = Variant(name="tiny", stage="export", python=py, requirements=str(lock), tag="t", base_image="b")
    store = EnvStore(tmp_path / "store", load_settings())
    first = store.ensure(variant)
    assert first.created
    first.python.unlink()
    first.python.symlink_to("/nonexistent/python")  # what a removed base interpreter leaves
    said = []
    again = EnvStore(tmp_path / "store", load_settings()).ensure(variant, said.append)
    assert again.created and again.path == first.path
    assert any("removing broken environment" in s for s in said), said
    assert subprocess.run([str(again.python), "-c", "import six"]).returncode == 0


@pytest.mark.parametrize(
    "change, says",
    [
        (("export-torch2.13", "max_opset", "20"), "variants.export-torch2.13.max_opset"),
        (("convert-tf2.15", "opsets", [7]), "variants.convert-tf2.15.opsets"),
        (("quantize-tf2.15", "kind", "tflite"), "variants.quantize-tf2.15.kind"),
        (("export-torch2.13", "python", 3.11), "variants.export-torch2.13.python"),
        (("convert-tf2.15", "layouts", "nchw"), "variants.convert-tf2.15.layouts"),
    ],
)
def test_the_catalog_is_checked_by_the_same_schema(tmp_path, change, says):
    from convertctl.config.catalog import images_dir, load_catalog
    from convertctl.errors import UsageError

    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib
    data = tomllib.loads((images_dir() / "catalog.toml").read_text())
    name, key, value = change
    data["variants"][name][key] = value
    path = tmp_path / "catalog.toml"
    path.write_text(_toml_dump(data))
    with pytest.raises(UsageError) as exc:
        load_catalog(path)
    assert str(path) in exc.value.message and says in exc.value.message


def _toml_dump(data: dict) -> str:
    """Enough TOML for the catalog (tables of scalars, lists and inline tables)."""

    def value(v):
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, str):
            return json.dumps(v)
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        if isinstance(v, dict):
            return "{ " + ", ".join(f"{json.dumps(k)} = {value(x)}" for k, x in v.items()) + " }"
        return repr(v)

    lines = []
    for runtime, stages in data.get("ladders", {}).items():
        lines.append(f"[ladders.{runtime}]")
        lines += [f"{k} = {value(v)}" for k, v in stages.items()]
    for name, table in data["variants"].items():
        lines.append(f'[variants."{name}"]')
        lines += [f"{json.dumps(k)} = {value(v)}" for k, v in table.items()]
    return "\n".join(lines) + "\n"
