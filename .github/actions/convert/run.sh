#!/usr/bin/env bash
# The convertctl action's shell steps, one subcommand per step of action.yml.
# Kept in a script so that tests/test_action.py runs exactly these commands,
# with fake GITHUB_OUTPUT / GITHUB_STEP_SUMMARY files, on a real conversion.
#
#   run.sh install   pip-install convertctl (INPUT_INSTALL, else this checkout)
#   run.sh prepare   runtime, environment cache key and paths, artifact name
#   run.sh convert   convertctl run; outputs status, files, sizes, report paths
#   run.sh envs      the stage environments there now, and the key to save them under
#   run.sh verdict   fail the step unless the run passed
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
python="${PYTHON:-python3}"

# name=value, or a multi-line value with a delimiter (GitHub's syntax).
output() {
  local name=$1 value=$2
  if [[ "$value" == *$'\n'* ]]; then
    local delim="EOF_$RANDOM$RANDOM"
    printf '%s<<%s\n%s\n%s\n' "$name" "$delim" "$value" "$delim" >>"$GITHUB_OUTPUT"
  else
    printf '%s=%s\n' "$name" "$value" >>"$GITHUB_OUTPUT"
  fi
}

# Space-, comma- or newline-separated words of an input, one per line.
words() { tr ',\n\t' '   ' <<<"$1" | tr -s ' ' '\n' | sed '/^$/d'; }

install() {
  local spec="${INPUT_INSTALL:-}"
  if [[ -z "$spec" ]]; then
    # The repository this action lives in: action and convertctl of one ref.
    spec="$(cd "$here/../../.." && pwd)[all]"
  fi
  echo "installing $spec"
  "$python" -m pip install --disable-pip-version-check --progress-bar off --quiet "$spec"
  convertctl --version
}

prepare() {
  CONVERTCTL_ACTION_DIR="$here" "$python" - <<'PY'
import hashlib, json, os, subprocess, sys
from pathlib import Path

from convertctl.config.catalog import load_catalog
from convertctl.store.envstore import EnvStore, env_key

runtime = os.environ.get("INPUT_RUNTIME") or "auto"
if runtime == "auto":
    from convertctl.runtimes.docker import connect

    client, why = connect(timeout=10)
    runtime = "docker" if client is not None else "local"
    print(f"runtime auto: {runtime}" + ("" if client is not None else f" (no Docker daemon: {why})"))

catalog = load_catalog()
# Every environment the local ladders may use (a model may need a later rung; quantize partners and
# the measure one included).
store = EnvStore()
# A rung whose Python this runner lacks (onnx2tf 2.x wants 3.13) is passed over by the ladder: no venv to cache.
local = [v for v in catalog.environments("local") if not store.find_python(v.python)[1]]
paths = sorted({str(store.path_for(v)) for v in local})


def interpreter(version: str) -> str:
    # The venvs link to it: a new patch release must not reuse old venvs.
    try:
        out = subprocess.run([f"python{version}", "-c", "import platform; print(platform.python_version())"],
                             capture_output=True, text=True, check=True)
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return f"{version}-missing"


pythons = "-".join(interpreter(p) for p in sorted({v.python for v in local}))
digest = hashlib.sha256(json.dumps(sorted(env_key(v) for v in local)).encode()).hexdigest()[:16]
prefix = f"convertctl-envs-{os.environ.get('RUNNER_OS', 'Linux')}-{os.environ.get('ImageOS', 'any')}-py{pythons}-"
# A run builds only the environments its model and modes need, so an entry
# is keyed by the lock set and then by which of its environments it holds
# (run.sh envs): the newest entry of this lock set is restored, and a run
# that built one more saves a new entry. One key per lock set would be hit
# exactly from then on and never saved again (caches cannot be overwritten).
# Another lock set's entry is the fallback: environments whose lock did not
# change are in it.
stem = Path(os.environ.get("INPUT_MODEL", "model")).stem or "model"
# Published images live with the action's repository, read from the action's
# own path (registry.py: github.action_repository is empty in composite actions).
sys.path.insert(0, os.environ["CONVERTCTL_ACTION_DIR"])
from registry import resolve

registry, how = resolve(
    os.environ.get("INPUT_REGISTRY", ""),
    os.environ.get("GITHUB_ACTION_PATH") or os.environ["CONVERTCTL_ACTION_DIR"],
    os.environ.get("GITHUB_WORKSPACE", ""),
    os.environ.get("GITHUB_REPOSITORY", ""),
)
print(how)
outputs = {
    "runtime": runtime,
    "cache": "true" if runtime == "local" and os.environ.get("INPUT_CACHE", "true") == "true" else "false",
    "cache-key": f"{prefix}{digest}-",
    "cache-restore-key": f"{prefix}{digest}-\n{prefix}",
    "cache-paths": "\n".join(paths),
    "artifact-name": os.environ.get("INPUT_ARTIFACT_NAME") or f"convertctl-{stem}",
    "registry": registry,
}
for name, value in outputs.items():
    print(f"{name}: {value}")
print(json.dumps(outputs), file=open(os.environ["CONVERTCTL_PREPARED"], "w"))
PY
}

convert() {
  : "${INPUT_MODEL:?the model input is required}"
  local out="${INPUT_OUT:-convertctl-out}" code word
  local -a args=(run "$INPUT_MODEL" --out "$out" --runtime "${RUNTIME:-auto}")
  while read -r word; do args+=(--quant "$word"); done < <(words "${INPUT_QUANT:-}")
  # Shapes contain commas: split on spaces and newlines only.
  for word in ${INPUT_INPUT_SHAPE:-}; do args+=(--input-shape "$word"); done
  [[ -n "${INPUT_CONVERTER:-}" ]] && args+=(--converter "$INPUT_CONVERTER")
  [[ -n "${INPUT_CONVERT_IMAGE:-}" ]] && args+=(--convert-image "$INPUT_CONVERT_IMAGE")
  [[ -n "${INPUT_CALIB:-}" ]] && args+=(--calib "$INPUT_CALIB")
  [[ -n "${INPUT_EVAL_DATA:-}" ]] && args+=(--eval-data "$INPUT_EVAL_DATA")
  while read -r word; do args+=(--max-accuracy-drop "$word"); done < <(words "${INPUT_MAX_ACCURACY_DROP:-}")
  if [[ -n "${INPUT_ARGS:-}" ]]; then
    local -a extra
    read -r -a extra <<<"$INPUT_ARGS"
    args+=("${extra[@]}")
  fi

  # A failed run keeps its run directory: the new one is the one to report.
  local runs="$out/.convertctl/runs" before log
  before="$(ls -1 "$runs" 2>/dev/null || true)"
  log="$(mktemp)"
  echo "convertctl ${args[*]}"
  set +e
  convertctl "${args[@]}" 2>&1 | tee "$log"
  code=${PIPESTATUS[0]}
  set -e

  local report="" run_dir="" name
  if [[ $code -eq 0 && -f "$out/report.json" ]]; then
    report="$out/report.json"
  else
    for name in $(ls -1t "$runs" 2>/dev/null || true); do
      if ! grep -qxF "$name" <<<"$before"; then
        run_dir="$runs/$name"
        [[ -f "$run_dir/report.json" ]] && report="$run_dir/report.json"
        break
      fi
    done
  fi
  CODE=$code REPORT=$report RUN_DIR=$run_dir LOG=$log "$python" - <<'PY'
import json, os, re
from pathlib import Path

code, report, run_dir = int(os.environ["CODE"]), os.environ["REPORT"], os.environ["RUN_DIR"]
data = json.loads(Path(report).read_text()) if report else {}
files = [a["path"] for a in data.get("artifacts", []) if a.get("path") and Path(a["path"]).is_file()]
sizes = {a["mode"]: a["size_bytes"] for a in data.get("artifacts", []) if a.get("size_bytes") is not None}
failure = data.get("failure", "")
if not report:  # stopped before a report existed (a usage error, say): say why in the summary
    # Plain text: typer and rich colour their output on GitHub runners.
    log = re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", Path(os.environ["LOG"]).read_text(errors="replace"))
    tail = log.splitlines()[-15:]
    failure = next((line for line in reversed(tail) if line.startswith("error:")), f"exit code {code}")
    with open(os.environ["GITHUB_STEP_SUMMARY"], "a") as summary:
        summary.write(f"## convertctl: failed (exit code {code})\n\n```\n" + "\n".join(tail) + "\n```\n")
if code == 0:
    # report.html and the Model Explorer overlays (one beside each .tflite that has per-layer errors) travel too.
    beside = [str(Path(report).with_name("report.html"))] + [str(Path(f).with_suffix(".layer_errors.json")) for f in files]
    upload = files + [report, str(Path(report).with_suffix(".md"))] + beside
else:
    upload = [run_dir] if run_dir else []
outputs = {
    "status": "passed" if code == 0 else "failed",
    "exit-code": str(code),
    "failure": failure.splitlines()[0] if failure else "",
    "files": "\n".join(files),
    "sizes": json.dumps(sizes, sort_keys=True),
    "report": report,
    "report-md": str(Path(report).with_suffix(".md")) if report else "",
    "report-html": str(Path(report).with_name("report.html")) if report else "",
    "run-dir": run_dir,
    "artifact-paths": "\n".join(p for p in upload if Path(p).exists()),
}
print(json.dumps(outputs), file=open(os.environ["CONVERTCTL_CONVERTED"], "w"))
PY
}

# After the conversion: the environments among CACHE_PATHS that are ready
# (their marker written: a half-built one is not worth a cache entry), and
# the key naming that set under CACHE_KEY, the lock set's prefix.
envs() {
  "$python" - <<'PY'
import hashlib, json, os
from pathlib import Path

from convertctl.store.envstore import MARKER

ready = sorted(p for p in os.environ.get("CACHE_PATHS", "").splitlines() if p and (Path(p) / MARKER).is_file())
held = hashlib.sha256("\n".join(Path(p).name for p in ready).encode()).hexdigest()[:12]
print(f"{len(ready)} stage environment(s) ready: " + (", ".join(Path(p).name for p in ready) or "none"))
outputs = {"save-key": os.environ["CACHE_KEY"] + held if ready else "", "save-paths": "\n".join(ready)}
print(json.dumps(outputs), file=open(os.environ["CONVERTCTL_ENVS"], "w"))
PY
}

# The Python snippets hand their outputs back as JSON: written here, in
# GitHub's format, by one function.
emit() {
  "$python" - "$1" <<'PY' | while IFS= read -r -d '' name && IFS= read -r -d '' value; do output "$name" "$value"; done
import json, sys
for name, value in json.load(open(sys.argv[1])).items():
    sys.stdout.write(f"{name}\0{value}\0")
PY
}

verdict() {
  if [[ "${EXIT_CODE:-}" == "0" ]]; then
    echo "convertctl: passed"
    return 0
  fi
  echo "::error title=convertctl ${STATUS:-failed} (exit code ${EXIT_CODE:-none})::${FAILURE:-see the log above}"
  exit "${EXIT_CODE:-1}"
}

case "${1:-}" in
  install) install ;;
  prepare)
    CONVERTCTL_PREPARED="$(mktemp)" && export CONVERTCTL_PREPARED
    prepare
    emit "$CONVERTCTL_PREPARED"
    ;;
  convert)
    CONVERTCTL_CONVERTED="$(mktemp)" && export CONVERTCTL_CONVERTED
    convert
    emit "$CONVERTCTL_CONVERTED"
    ;;
  envs)
    CONVERTCTL_ENVS="$(mktemp)" && export CONVERTCTL_ENVS
    envs
    emit "$CONVERTCTL_ENVS"
    ;;
  verdict) verdict ;;
  *)
    echo "usage: run.sh install|prepare|convert|envs|verdict" >&2
    exit 2
    ;;
esac
