"""Stage images: build context, content key, pull or build through the Docker SDK.

An image is referenced as <catalog tag>-<content key>. The key hashes what
decides the image's bits (the Dockerfile rendered from images/Dockerfile.template, hashed lock, stage code, the base
image's identity, the variant name in its label), as DVC keys a stage by the
hash of its canonical description. Where the packages come from (index URLs,
CA bundle, wheelhouse, torch index) is not in it: those reach only the
Dockerfile's build stage, and the lock's hashes make every source give the
same files. So an image pulled under a key and one built here under that key
are the same image: with a registry set (CONVERTCTL_REGISTRY), a missing
image is pulled before it is built. Docker's layer cache makes a code-only
change cost seconds because the code is copied last.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
import time
from pathlib import Path

from convertctl.config.catalog import Variant, images_dir
from convertctl.errors import EnvironmentProblem, MachineProblem, machine_sign
from convertctl.runtimes.base import Prepared, Say
from convertctl.store.buildprogress import BuildProgress
from convertctl.store.lockfile import Sources, sources
from convertctl.store.pipconfig import IndexSettings

KEY_LABEL = "org.convertctl.key"
BUILD_STAGE_LABEL = "org.convertctl.build-stage"  # the template's build stage, labelled with its lock's digest
# The build stage, tagged: Docker's legacy builder leaves it untagged (<none>), yet it is the install
# step's cache (without it a stage-code change installs the lock again). Tagged, it is listed, and
# `images prune` removes the ones no lock of the catalog uses.
BUILD_CACHE = "convertctl/build-cache"
VARIANT_LABEL = "org.convertctl.variant"
# Bump when what the key covers changes meaning. 2: build inputs (CA, indexes) left out.
# 3: the Dockerfile is rendered from images/Dockerfile.template.
KEY_FORMAT = 3


def registry_setting() -> str:
    """Where prebuilt stage images are pulled from (host[:port][/path]); none by default."""
    return os.environ.get("CONVERTCTL_REGISTRY", "").strip().rstrip("/")


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix == ".py")


TEMPLATE = "Dockerfile.template"
HEAVY_END = "# ---- variant-specific from here on"  # the template's text above it: lock and base only
_FIELD = re.compile(r"\{\{ (\w+) \}\}")
_PIN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*==[A-Za-z0-9][A-Za-z0-9.+!_-]*$")


def render_dockerfile(variant: Variant) -> str:
    """images/Dockerfile.template filled in from the variant's catalog table,
    as cog writes its Dockerfile from cog.yaml: one template for every
    stage image, so variants sharing a lock share its install layer."""
    pins = [f"{name}=={version}" for name, version in variant.pins.items()]
    bad = [p for p in pins if not _PIN.match(p)]
    if bad or not pins:  # the pins go into a shell command line: plain names and versions only
        raise EnvironmentProblem(f"catalog: variant {variant.name}: pins {bad or '(none)'} cannot be smoke-tested")
    fields = {
        "base_image": variant.base_image,
        "lock_sha256": variant.lock_digest(),
        "smoke_pins": " ".join(pins),
        "folder": variant.image_folder,
        "stage": variant.stage,
        "script": variant.script_rel,
        "apt_install": _apt_install(variant.apt),
    }
    return _FIELD.sub(lambda m: fields[m.group(1)], (images_dir() / TEMPLATE).read_text())


def _apt_install(packages: tuple) -> str:
    # Names only (the catalog's schema holds them to Debian's package-name characters).
    if not packages:
        return "# (none)"
    return (
        "RUN apt-get update \\\n    && apt-get install -y --no-install-recommends "
        + " ".join(packages)
        + " \\\n    && rm -rf /var/lib/apt/lists/*"
    )


def build_cache_tag(variant: Variant) -> str:
    return f"{BUILD_CACHE}:{variant.lock_digest()[:12]}"


class ImageBuilder:
    def __init__(self, client, settings: IndexSettings, base_image: str = "", registry: str | None = None):
        self.client = client
        self.settings = settings
        self.base_override = base_image
        self.registry = registry_setting() if registry is None else registry
        self.pulled: set = set()  # refs this builder pulled rather than built
        self._checked: dict = {}
        self._keys: dict = {}

    # -- what goes in ---------------------------------------------------
    def ca_bytes(self) -> bytes:
        cert = self.settings.cert
        if not cert:
            return b""
        try:
            return Path(cert).read_bytes()
        except OSError as exc:
            raise EnvironmentProblem(f"CA bundle {cert}: cannot read ({exc.strerror})") from None

    def _image(self, tag: str):
        """The image with that tag, or None."""
        import docker

        try:
            return self.client.images.get(tag)
        except docker.errors.ImageNotFound:
            return None

    def base_for(self, variant: Variant) -> str:
        """--base-image; else the catalog's base if present locally; else
        the debootstrapped convertctl-base:<suite> if present (no registry
        needed); else the catalog's base, which Docker will try to pull."""
        if self.base_override:
            return self.base_override
        local = f"convertctl-base:{variant.debian}"
        if self._image(variant.base_image) is None and self._image(local) is not None:
            return local
        return variant.base_image

    def base_identity(self, variant: Variant) -> str:
        """The base image's id when it is here (a pulled python:3.11-slim has
        the same id everywhere; a debootstrapped base is its own), else its name."""
        base = self.base_for(variant)
        image = self._image(base)
        return image.id if image is not None else base

    def sources(self, variant: Variant) -> Sources:
        """Wheelhouse files (--wheelhouse, pip's find-links) the lock names, and the torch index if needed."""
        found = sources(variant.lock_text(), self.settings.find_links, variant.torch_index)
        if found.missing:
            raise EnvironmentProblem(
                f"lock {variant.requirements} pins {', '.join(found.missing)}, which no index has",
                hint="give --wheelhouse DIR holding that file, or set CONVERTCTL_TORCH_INDEX",
            )
        return found

    def build_args(self, variant: Variant) -> dict:
        args = {"BASE_IMAGE": self.base_for(variant), "VARIANT": variant.name, **self.settings.docker_build_args()}
        torch_index = self.sources(variant).torch_index
        return {**args, "TORCH_INDEX": torch_index} if torch_index else args

    def key(self, variant: Variant) -> str:
        # By value: same name, other fields (lock, tag) => another key. The pins too (the smoke
        # test renders them), which Variant's equality leaves out.
        memo = (variant, tuple(sorted(variant.pins.items())))
        if memo not in self._keys:
            self._keys[memo] = self._key(variant)
        return self._keys[memo]

    def _key(self, variant: Variant) -> str:
        digest = hashlib.sha256()
        parts = {
            "format": KEY_FORMAT,
            "dockerfile": render_dockerfile(variant),
            "lock": variant.lock_text(),
            "base": self.base_identity(variant),
            "variant": variant.name,  # in the image's label
            "code": {
                str(p.relative_to(images_dir())): p.read_text()
                for p in _files(images_dir() / "common") + _files(variant.stage_dir)
            },
        }
        digest.update(json.dumps(parts, sort_keys=True).encode())
        return digest.hexdigest()[:20]

    def context(self, variant: Variant, into: Path) -> Path:
        """Dockerfile (rendered), requirements.txt, ca-bundle.crt, wheels/, common/, stage/."""
        (into / "Dockerfile").write_text(render_dockerfile(variant))
        shutil.copyfile(variant.lock_path, into / "requirements.txt")
        (into / "ca-bundle.crt").write_bytes(self.ca_bytes())
        (into / "wheels").mkdir()
        for wheel in self.sources(variant).files:  # only what the lock names, never the whole wheelhouse
            try:
                os.link(wheel, into / "wheels" / wheel.name)
            except OSError:  # another filesystem, or no permission to link
                shutil.copyfile(wheel, into / "wheels" / wheel.name)
        for name, src in (("common", images_dir() / "common"), ("stage", variant.stage_dir)):
            (into / name).mkdir()
            for f in _files(src):
                shutil.copyfile(f, into / name / f.name)
        return into

    # -- state ----------------------------------------------------------
    def current(self, variant: Variant) -> bool:
        return self.describe(variant)["current"]

    def ref(self, variant: Variant) -> str:
        """The image reference that holds exactly this image: the catalog's
        tag with the content key appended. Different stage code, locks or
        bases never share a reference, so checkouts side by side cannot
        overwrite each other, and a pulled image is the one a build makes."""
        return f"{variant.tag}-{self.key(variant)[:12]}"

    def describe(self, variant: Variant) -> dict:
        image = self._image(self.ref(variant))
        current = image is not None
        if image is None:
            image = self._image(variant.tag)  # an older build under the plain tag
        if image is None:
            return {"built": False, "current": False, "state": "not built", "size_bytes": 0, "ref": self.ref(variant)}
        return {
            "ref": self.ref(variant),
            "built": True,
            "current": current,
            "state": "current" if current else "stale",
            "size_bytes": int(image.attrs.get("Size", 0)),
            "id": image.short_id,
        }

    # -- build ----------------------------------------------------------
    def ensure(self, variant: Variant, say: Say, force: bool = False) -> Prepared:
        if not force and variant in self._checked:
            return self._checked[variant]
        self._base_here(variant, say)
        if not force and self.current(variant):
            prepared = Prepared(variant, self.ref(variant), created=False)
        else:
            started = time.monotonic()
            if force or not self.pull(variant, say):
                self.build(variant, say)
            prepared = Prepared(variant, self.ref(variant), created=True, seconds=time.monotonic() - started)
        self._checked[variant] = prepared
        return prepared

    def _base_here(self, variant: Variant, say: Say) -> None:
        """Pull a missing base before the key is taken, so that the key names
        the base's id, not just its name. A failed pull is left to the build,
        which says what to do (see _failure)."""
        import docker

        base = self.base_for(variant)
        if self._image(base) is not None:
            return
        say(f"pulling base image {base}")
        try:
            self.client.images.pull(base)
            self._keys.clear()  # keys taken before named the base by its name, not its id
        except docker.errors.DockerException:
            pass

    def pull(self, variant: Variant, say: Say) -> bool:
        """<registry>/<ref> pulled and tagged as ref; False (one line said) if none is there."""
        import docker

        if not self.registry:
            return False
        remote, ref = f"{self.registry}/{self.ref(variant)}", self.ref(variant)
        try:
            image = self.client.images.pull(remote)
        except docker.errors.DockerException as exc:
            reason = str(getattr(exc, "explanation", "") or exc).splitlines()[0][:100]
            say(f"could not pull {remote} ({reason}); building it here")
            return False
        if image.labels.get(KEY_LABEL) != self.key(variant):
            say(f"{remote} carries another content key; building it here")
            return False
        repo, _, tag = ref.rpartition(":")
        image.tag(repo, tag)
        self._tag_plain(variant)
        self.pulled.add(ref)
        return True

    def _tag_plain(self, variant: Variant) -> None:
        # The plain catalog tag follows the newest image, for people typing `docker run`.
        repo, _, tag = variant.tag.rpartition(":")
        self.client.images.get(self.ref(variant)).tag(repo, tag)

    def build(self, variant: Variant, say: Say) -> None:
        import docker

        ref = self.ref(variant)
        say(f"building {ref} ({variant.stage}, Python {variant.python}, base {self.base_for(variant)})")
        tail: list = []
        with tempfile.TemporaryDirectory(prefix="convertctl-ctx-") as tmp, BuildProgress(say, ref) as progress:
            ctx = self.context(variant, Path(tmp))
            try:
                stream = self.client.api.build(
                    path=str(ctx),
                    tag=ref,
                    buildargs=self.build_args(variant),
                    rm=True,
                    forcerm=True,
                    decode=True,
                    labels={KEY_LABEL: self.key(variant), VARIANT_LABEL: variant.name},
                )
                for chunk in stream:
                    if "error" in chunk:
                        tail.append(chunk["error"].strip())
                        raise self._problem(variant, tail)
                    for line in chunk.get("stream", "").splitlines():
                        if line.strip():
                            tail = (tail + [line.rstrip()])[-15:]
                            progress.line(line)  # docker's "Step k/n", pip's packages: a step, a time, a package
            except docker.errors.APIError as exc:
                tail.append(str(exc))
                raise self._problem(variant, tail) from None
        self._tag_plain(variant)
        self._keep_build_stage(variant)

    def _keep_build_stage(self, variant: Variant) -> None:
        """Tag the build stage this build left untagged as build_cache_tag(variant);
        an earlier build stage of the same lock that it replaces is removed."""
        import docker

        stages = self.client.images.list(
            filters={"dangling": True, "label": f"{BUILD_STAGE_LABEL}={variant.lock_digest()}"}
        )
        repo, _, tag = build_cache_tag(variant).rpartition(":")
        earlier = self._image(f"{repo}:{tag}")
        if not stages:
            return  # nothing rebuilt: the tagged one is still the cache
        newest = max(stages, key=lambda i: str(i.attrs.get("Created", "")))
        newest.tag(repo, tag)
        for image in [*stages, *([earlier] if earlier is not None else [])]:
            if image.id != newest.id:
                try:
                    self.client.images.remove(image.id)
                except docker.errors.APIError:
                    pass  # still a parent of something: `images prune` says so

    def _problem(self, variant: Variant, tail: list) -> EnvironmentProblem:
        full = machine_sign(tail)
        if full:  # every other image would meet it too: the run ends (exit 5)
            return MachineProblem(
                f"building {variant.tag} failed: {full} (Docker's data root)",
                hint="free some space (`convertctl images prune`, `docker system df`) and run again",
            )
        return EnvironmentProblem(self._failure(variant, tail))

    def _failure(self, variant: Variant, tail: list) -> str:
        text = "\n".join(tail[-12:])
        hint = ""
        if "pull access denied" in text or "no such host" in text or "manifest" in text:
            hint = (
                f"\nNo registry reachable for {self.base_for(variant)}: make a local base with "
                f"`images/base/make-base.sh {variant.debian} convertctl-base:{variant.debian}` "
                "or pass --base-image."
            )
        return f"building {variant.tag} failed:\n{text}{hint}"
