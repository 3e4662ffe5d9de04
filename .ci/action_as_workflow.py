"""A composite action's metadata as a one-job workflow, so that actionlint
(which checks workflows only) checks its expressions, step ids, contexts and
inputs: action inputs become workflow_call inputs, action outputs the job's
outputs. Also checks what actionlint cannot see: `using: composite`, a
`shell` on every run step, and each input documented.

    python .ci/action_as_workflow.py ACTION_YML > workflow.yml
"""

from __future__ import annotations

import sys

import yaml


def main(path: str) -> int:
    meta = yaml.safe_load(open(path))
    problems = []
    if meta.get("runs", {}).get("using") != "composite":
        problems.append("runs.using is not composite")
    for key in ("name", "description"):
        if not meta.get(key):
            problems.append(f"no {key}")
    for name, spec in (meta.get("inputs") or {}).items():
        if not (spec or {}).get("description"):
            problems.append(f"input {name} has no description")
    for name, spec in (meta.get("outputs") or {}).items():
        if not (spec or {}).get("value"):
            problems.append(f"output {name} has no value")
    steps = meta.get("runs", {}).get("steps", [])
    for i, step in enumerate(steps):
        if "run" in step and "shell" not in step:
            problems.append(
                f"step {i} ({step.get('name', step['run'][:30])}) has no shell (composite actions need one)"
            )
    if problems:
        for p in problems:
            print(f"{path}: {p}", file=sys.stderr)
        return 1
    inputs = {name: {"type": "string", "required": False} for name in meta.get("inputs") or {}}
    job = {
        "runs-on": "ubuntu-latest",
        "outputs": {name: spec["value"] for name, spec in (meta.get("outputs") or {}).items()},
        "steps": steps,
    }
    workflow = {"name": meta["name"], "on": {"workflow_call": {"inputs": inputs}}, "jobs": {"action": job}}
    yaml.safe_dump(workflow, sys.stdout, sort_keys=False, width=1000)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
