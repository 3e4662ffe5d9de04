#!/usr/bin/env bash
# One catalog variant's stage image, published as <registry>/<catalog tag>-<key>
# (the reference the Docker runtime pulls, CONVERTCTL_REGISTRY=<registry>).
# Used by .github/workflows/images.yml; tests/test_images_workflow.py runs that
# workflow's steps against a local registry.
#
#   publish-image.sh --plan               variants=<JSON list of every catalog variant>
#   publish-image.sh VARIANT REGISTRY     build (or pull back) VARIANT's image, check its key, push it
set -euo pipefail

# convertctl's own view of the variants: `images list --json`.
listing() { convertctl images list --json; }

if [[ "${1:-}" == "--plan" ]]; then
  listing | python3 -c 'import json, sys; print("variants=" + json.dumps([r["variant"] for r in json.load(sys.stdin)]))'
  exit 0
fi
variant="${1:?usage: publish-image.sh VARIANT REGISTRY | --plan}"
registry="${2:?usage: publish-image.sh VARIANT REGISTRY | --plan}"
registry="${registry%/}"

# With the target registry set, a key that is already published is pulled
# back instead of built: one key never names two different images.
export CONVERTCTL_REGISTRY="$registry"
convertctl images build --variant "$variant"

# Read after the build: the key covers the base image, known once it is here.
read -r ref key state < <(listing | python3 -c '
import json, sys
rows = [r for r in json.load(sys.stdin) if r["variant"] == sys.argv[1]]
if not rows:
    sys.exit(f"no catalog variant {sys.argv[1]!r}")
print(rows[0]["ref"], rows[0]["key"], rows[0]["state"].replace(" ", "-"))' "$variant")
if [[ "$state" != current ]]; then
  echo "$variant: $ref is $state right after building it" >&2
  exit 1
fi
label="$(docker image inspect --format '{{ index .Config.Labels "org.convertctl.key" }}' "$ref")"
if [[ "$label" != "$key" ]]; then
  echo "$ref carries org.convertctl.key=$label; convertctl expects $key" >&2
  exit 1
fi

remote="$registry/$ref"
docker tag "$ref" "$remote"
docker push --quiet "$remote"
echo "published $remote (org.convertctl.key=$key)"
if [[ -n "${GITHUB_STEP_SUMMARY:-}" ]]; then
  echo "- \`$remote\` (org.convertctl.key=$key)" >>"$GITHUB_STEP_SUMMARY"
fi
