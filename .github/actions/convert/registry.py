"""Where the action pulls published stage images from: the `registry` input,
else ghcr.io/<owner of the repository this action was checked out from>.

That owner cannot come from `github.action_repository`: inside a composite
action it is empty (actions/runner#2525, #2473), and falling back to the
user's own repository meant pulling from a registry that holds nothing, so
every run built every image. The action's own path says it instead: the
runner checks a remote action out to <work>/_actions/OWNER/REPO/REF[/path]
(REF may itself hold slashes, OWNER and REPO never do); a local action
(`uses: ./.github/actions/convert`) lies inside the workspace, whose
repository is then the action's.

    python registry.py  # reads INPUT_REGISTRY, GITHUB_ACTION_PATH, GITHUB_WORKSPACE, GITHUB_REPOSITORY

prints the registry (empty: build every image here) on stdout and one line
saying how it was chosen on stderr. Stdlib only: it runs before anything
but convertctl is installed.
"""

from __future__ import annotations

import os
import posixpath
import re
import sys

OWNER = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})")
REPO = re.compile(r"[A-Za-z0-9._-]{1,100}")
NONE = "none"


def _norm(path: str) -> str:
    return posixpath.normpath(path) if path else ""


def _inside(path: str, folder: str) -> bool:
    return bool(folder) and (path == folder or path.startswith(folder.rstrip("/") + "/"))


def _valid(owner: str, repo: str) -> bool:
    return bool(OWNER.fullmatch(owner) and REPO.fullmatch(repo)) and repo not in (".", "..")


def action_repository(action_path: str, workspace: str = "", repository: str = "") -> tuple[str, str]:
    """('OWNER/REPO', how) for the repository the action was checked out
    from, or ('', why not)."""
    path, workspace = _norm(action_path), _norm(workspace)
    if not path.startswith("/"):
        return "", f"the action's path {action_path!r} is not an absolute path"
    if _inside(path, workspace):
        owner, _, repo = repository.partition("/")
        if _valid(owner, repo):
            return repository, f"a local action, in the workspace of {repository}"
        return "", f"a local action, but GITHUB_REPOSITORY {repository!r} is not OWNER/REPO"
    parts = path.split("/")
    # The runner's work folder is the workspace's grandparent
    # (<work>/REPO/REPO); its _actions first, then any _actions component.
    work = posixpath.dirname(posixpath.dirname(workspace)) if workspace else ""
    starts = [i for i, p in enumerate(parts) if p == "_actions"]
    starts.sort(key=lambda i: "/".join(parts[:i]) != work)
    for i in starts:
        if len(parts) < i + 4:  # OWNER, REPO and at least one REF component
            continue
        owner, repo = parts[i + 1], parts[i + 2]
        if _valid(owner, repo):
            return f"{owner}/{repo}", f"from the action's path ({'/'.join(parts[i : i + 3])}/...)"
    return "", (
        f"cannot tell the action's repository from its path {action_path!r} "
        "(expected <runner work folder>/_actions/OWNER/REPO/REF/..., or a folder in the workspace)"
    )


def resolve(given: str, action_path: str, workspace: str = "", repository: str = "") -> tuple[str, str]:
    """(registry, how it was chosen); registry '' means build every image."""
    given = given.strip()
    if given.lower() == NONE:
        return "", "registry: none (input): every stage image is built here"
    if given:
        return given.rstrip("/"), f"registry: {given.rstrip('/')} (input)"
    found, how = action_repository(action_path, workspace, repository)
    if not found:
        return "", f"registry: none, {how}: every stage image is built here (set the action's registry input to pull)"
    registry = f"ghcr.io/{found.partition('/')[0].lower()}"  # registries want lower case
    return registry, f"registry: {registry} (the action's repository {found}: {how})"


def main() -> int:
    registry, how = resolve(
        os.environ.get("INPUT_REGISTRY", ""),
        os.environ.get("GITHUB_ACTION_PATH") or os.path.dirname(os.path.abspath(__file__)),
        os.environ.get("GITHUB_WORKSPACE", ""),
        os.environ.get("GITHUB_REPOSITORY", ""),
    )
    print(how, file=sys.stderr)
    print(registry)
    return 0


if __name__ == "__main__":
    sys.exit(main())
