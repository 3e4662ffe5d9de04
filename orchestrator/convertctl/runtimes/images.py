"""Stage images: build context, content key, build through the Docker SDK.

An image is current when its label org.convertctl.key equals the hash of
everything that goes into its build (Dockerfile, lock, stage code, CA
bundle, build args, base image), as DVC keys a stage by the hash of its
canonical description. A stale image is rebuilt; Docker's layer cache makes
a code-only change cost seconds because the code is copied last.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
import time
from pathlib import Path

from convertctl.catalog import Variant, images_dir
from convertctl.errors import EnvironmentProblem
from convertctl.pipconfig import IndexSettings
from convertctl.runtimes.base import Prepared, Say

KEY_LABEL = "org.convertctl.key"
VARIANT_LABEL = "org.convertctl.variant"


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix == ".py")


class ImageBuilder:
    def __init__(self, client, settings: IndexSettings, base_image: str = ""):
        self.client = client
        self.settings = settings
        self.base_override = base_image
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

    def build_args(self, variant: Variant) -> dict:
        return {"BASE_IMAGE": self.base_for(variant), "VARIANT": variant.name, **self.settings.docker_build_args()}

    def key(self, variant: Variant) -> str:
        if variant.name not in self._keys:
            self._keys[variant.name] = self._key(variant)
        return self._keys[variant.name]

    def _key(self, variant: Variant) -> str:
        digest = hashlib.sha256()
        parts = {
            "dockerfile": (variant.stage_dir / "Dockerfile").read_text(),
            "lock": variant.lock_text(),
            "ca": hashlib.sha256(self.ca_bytes()).hexdigest(),
            "args": self.build_args(variant),
            "code": {
                str(p.relative_to(images_dir())): p.read_text()
                for p in _files(images_dir() / "common") + _files(variant.stage_dir)
            },
        }
        digest.update(json.dumps(parts, sort_keys=True).encode())
        return digest.hexdigest()[:20]

    def context(self, variant: Variant, into: Path) -> Path:
        """Dockerfile, ca-bundle.crt, requirements.txt, common/, stage/."""
        shutil.copyfile(variant.stage_dir / "Dockerfile", into / "Dockerfile")
        shutil.copyfile(variant.lock_path, into / "requirements.txt")
        (into / "ca-bundle.crt").write_bytes(self.ca_bytes())
        for name, src in (("common", images_dir() / "common"), ("stage", variant.stage_dir)):
            (into / name).mkdir()
            for f in _files(src):
                shutil.copyfile(f, into / name / f.name)
        return into

    # -- state ----------------------------------------------------------
    def current(self, variant: Variant) -> bool:
        return self.describe(variant)["current"]

    def ref(self, variant: Variant) -> str:
        """The image reference that holds exactly this build: the catalog's
        tag with the content key appended. Different stage code, locks or
        bases never share a reference, so checkouts side by side (or a
        pulled and a built image) cannot overwrite each other."""
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
        if not force and variant.name in self._checked:
            return self._checked[variant.name]
        if not force and self.current(variant):
            prepared = Prepared(variant, self.ref(variant), created=False)
        else:
            started = time.monotonic()
            self.build(variant, say)
            prepared = Prepared(variant, self.ref(variant), created=True, seconds=time.monotonic() - started)
        self._checked[variant.name] = prepared
        return prepared

    def build(self, variant: Variant, say: Say) -> None:
        import docker

        ref = self.ref(variant)
        say(f"building {ref} ({variant.stage}, Python {variant.python}, base {self.base_for(variant)})")
        tail: list = []
        with tempfile.TemporaryDirectory(prefix="convertctl-ctx-") as tmp:
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
                        raise EnvironmentProblem(self._failure(variant, tail))
                    for line in chunk.get("stream", "").splitlines():
                        if line.strip():
                            tail = (tail + [line.rstrip()])[-15:]
                            say(line.strip()[:120])
            except docker.errors.APIError as exc:
                tail.append(str(exc))
                raise EnvironmentProblem(self._failure(variant, tail)) from None
        # The plain catalog tag follows the newest build, for people typing `docker run`.
        repo, _, tag = variant.tag.rpartition(":")
        self.client.images.get(ref).tag(repo, tag)

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
