"""`convertctl images prune`: the Docker images convertctl built and this
install no longer uses, untagged build stages included.

Only images carrying convertctl's own labels are ever looked at: a final
stage image carries org.convertctl.stage, the build stage of a multi-stage
build org.convertctl.build-stage (Docker's legacy builder leaves it
untagged; convertctl tags it convertctl/build-cache:<lock>, as the install
step's cache). An image is in use when one of its tags is a reference this
install's catalog builds (ImageBuilder.ref, build_cache_tag): stage code,
lock or base changed, and the old image is garbage no command listed. Base images (convertctl-base:*) are
made by .ci/docker-up, not by a build, and are left alone.
"""

from __future__ import annotations

from dataclasses import dataclass

from convertctl.runtimes.images import BUILD_CACHE, BUILD_STAGE_LABEL

STAGE_LABEL = "org.convertctl.stage"


@dataclass(frozen=True)
class Doomed:
    id: str
    tags: tuple
    size_bytes: int
    why: str


def plan(client, in_use: set, everything: bool = False) -> list[Doomed]:
    """What a prune removes: labelled images none of whose tags is in
    ``in_use`` (all labelled images with ``everything``), and every untagged
    labelled build stage. Largest first."""
    doomed: dict[str, Doomed] = {}
    for image in client.images.list(filters={"label": STAGE_LABEL}):
        tags = tuple(image.tags)
        if everything or not (set(tags) & in_use):
            why = "untagged" if not tags else "every convertctl image (--all)" if everything else "no variant uses it"
            doomed[image.id] = Doomed(image.id, tags, _size(image), why)
    for image in client.images.list(filters={"label": BUILD_STAGE_LABEL}):
        tags = tuple(image.tags)
        if not tags:
            doomed[image.id] = Doomed(image.id, (), _size(image), "untagged build stage")
        elif all(t.startswith(BUILD_CACHE + ":") for t in tags) and (everything or not (set(tags) & in_use)):
            why = "every convertctl image (--all)" if everything else "a build cache no lock of the catalog uses"
            doomed[image.id] = Doomed(image.id, tags, _size(image), why)
        # a build stage someone tagged otherwise is theirs now
    return sorted(doomed.values(), key=lambda d: -d.size_bytes)


def remove(client, doomed: list[Doomed]) -> tuple[list[Doomed], list[tuple[Doomed, str]]]:
    """Remove each (its tags, then the image); (removed, kept with why). An
    image a container still uses is kept, not forced."""
    import docker

    removed, kept = [], []
    for d in doomed:
        try:
            for tag in d.tags:
                client.images.remove(tag, noprune=False)
            if not d.tags:
                client.images.remove(d.id, noprune=False)
            removed.append(d)
        except docker.errors.ImageNotFound:
            removed.append(d)  # gone with an image removed before it
        except docker.errors.APIError as exc:
            kept.append((d, str(exc.explanation or exc)))
    return removed, kept


def _size(image) -> int:
    return int(image.attrs.get("Size", 0) or 0)
