"""Docker runtime: each stage in its own pinned image, through the Docker SDK.

Containers are hardened by default: an untrusted .pt is a pickle, and
loading it can run code. They never run as root: as the invoking uid:gid,
or, when convertctl itself runs as root, as the image's unprivileged user,
to whom the run directory is then given. Without network, on a read-only
root with a tmpfs /tmp, with every capability dropped, no-new-privileges,
memory and pid limits; the model is mounted read-only and the run directory
is the only writable mount (the shared volume). Mounts are the SDK's Mount
objects, so any path works (a "host:container" string breaks on a ":").

Every container carries its run directory and its owner (host:pid:start
time) as labels: the guard process (procs.py) removes it if convertctl is
killed, and the next run's start removes any whose owner is gone.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterable
from pathlib import Path

from convertctl.config import runtimes
from convertctl.config.catalog import Variant
from convertctl.errors import ConversionError, EnvironmentProblem
from convertctl.runtimes import images
from convertctl.runtimes.base import LogTail, Prepared, Runtime, Say, StageRun, Step, read_result, write_request
from convertctl.runtimes.freezes import remembered
from convertctl.store import procs, rundir
from convertctl.store.envstore import default_root
from convertctl.store.pipconfig import IndexSettings

RUN_MOUNT = "/rundir"
RUN_LABEL = "org.convertctl.run"
OWNER_LABEL = "org.convertctl.owner"
# The user stage images declare (USER in images/Dockerfile.template), when an image says nothing usable.
NOBODY = "65534:65534"
CODE_ROOT = "/opt/convertctl"  # images/<folder>/ is copied to CODE_ROOT/<folder>/
# Request keys that name a file or folder on the host, and where it is mounted.
HOST_PATHS = {"model": "/model", "code_dir": "/code"}
# Seconds a Docker API call may take once the daemon has answered: the ping
# is quick to fail, but creating or removing a container on a daemon busy
# with builds can take well over the ping's 10 s.
API_TIMEOUT = 600


def connect(timeout: int = 10):
    """(client, None) when a daemon answers, else (None, why not)."""
    try:
        import docker
    except ImportError:
        return None, "the docker Python package is not installed: pip install 'convertctl[docker]'"
    where = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
    try:
        client = docker.from_env(timeout=timeout)
        client.ping()
        client.api.timeout = API_TIMEOUT
        return client, None
    except Exception as exc:  # noqa: BLE001 - any failure means "no daemon"
        cause: BaseException = exc
        while (inner := cause.__cause__ or cause.__context__) is not None:  # the root cause speaks plainest
            cause = inner
        return None, f"nothing at {where}: {type(cause).__name__}"


def require_client(flag: str = ""):
    """A client, or the one error that says no daemon answers and how to start one."""
    client, why = connect()
    if client is None:
        hint = "start one (e.g. `sudo systemctl start docker`, or `dockerd &` as root)"
        raise EnvironmentProblem(
            f"{flag}no Docker daemon answers ({why})", hint=hint + (", or use --runtime local" if flag else "")
        )
    return client


def invoking_user() -> str:
    return f"{os.getuid()}:{os.getgid()}"


def image_user(image) -> str:
    """The image's numeric USER, if it names an unprivileged uid:gid."""
    user = (image.attrs.get("Config") or {}).get("User") or ""
    uid, _, gid = user.partition(":")
    if uid.isdigit() and int(uid) != 0 and (not gid or gid.isdigit()):
        return f"{uid}:{gid or uid}"
    return NOBODY


def remove_labelled(client, label: str, wanted=lambda labels: True) -> int:
    """Force-remove the containers carrying `label` ("key" or "key=value")
    whose labels `wanted` accepts; how many went. Never raises: what is left
    is the next sweep's."""
    try:
        found = client.containers.list(all=True, filters={"label": label})
    except Exception:  # noqa: BLE001 - a sweep never stops a run
        return 0
    removed = 0
    for container in found:
        if wanted(container.labels):
            try:
                container.remove(force=True)
                removed += 1
            except Exception:  # noqa: BLE001 - already gone
                pass
    return removed


def remove_orphans(client, say) -> int:
    """Remove stage containers whose convertctl process is gone (killed
    before it could remove them). Containers of live runs, and of other
    hosts sharing the daemon, are left alone."""
    removed = remove_labelled(client, OWNER_LABEL, lambda labels: procs.owner_gone(labels.get(OWNER_LABEL, "")))
    if removed:
        say(f"removed {removed} stage container(s) left running by a convertctl that was killed")
    return removed


def hardening(memory: str = "8g", pids: int = 1024, user: str = "") -> dict:
    """Container options every stage runs with."""
    return {
        "user": user or (invoking_user() if os.getuid() != 0 else NOBODY),
        "network_disabled": True,
        "network_mode": "none",
        "read_only": True,
        "tmpfs": {"/tmp": "rw,exec,nosuid,size=4g,mode=1777"},
        "cap_drop": ["ALL"],
        "security_opt": ["no-new-privileges"],
        "mem_limit": memory,
        "pids_limit": pids,
        "environment": {"HOME": "/tmp", "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1"},
        "working_dir": "/tmp",
    }


class MemorySampler:
    """A container's peak memory, from Docker's stats stream (one sample a
    second, read in a thread). cgroup v1 reports the true peak (max_usage);
    cgroup v2 only the current use, so a spike between samples is missed.
    Page cache is left out, as `docker stats` leaves it out: what remains is
    the processes' own memory, comparable with a local stage's RSS."""

    def __init__(self, container):
        self.peak = 0
        self.thread = threading.Thread(target=self._read, args=(container,), daemon=True)
        self.thread.start()

    def _read(self, container) -> None:
        try:
            for sample in container.stats(stream=True, decode=True):
                memory = sample.get("memory_stats") or {}
                stats = memory.get("stats") or {}
                cache = stats.get("total_inactive_file", stats.get("inactive_file", stats.get("cache", 0)))
                used = max(memory.get("max_usage") or 0, memory.get("usage") or 0) - (cache or 0)
                self.peak = max(self.peak, used)
        except Exception:  # noqa: BLE001 - a measurement never fails a stage
            pass

    def peak_mb(self) -> float | None:
        # Not joined: the stream ends once the container is removed, and no stage waits for it.
        return round(self.peak / 2**20, 1) if self.peak > 0 else None


class DockerRuntime(Runtime):
    name = "docker"
    sandboxed = runtimes.BY_NAME[name].sandboxed

    def __init__(
        self, client, settings: IndexSettings, base_image: str = "", memory: str = "8g", user: str = "", say=None
    ):
        super().__init__()
        self.client = client
        self.builder = images.ImageBuilder(client, settings, base_image)
        self.memory = memory
        self.user = user  # tests run stages as another uid to check ownership
        remove_orphans(client, say or (lambda _: None))

    @classmethod
    def create(cls, settings: IndexSettings, say: Say, options: dict, flag: str = "") -> DockerRuntime:
        return cls(require_client(flag), settings, say=say, **options)

    def user_for(self, ref: str) -> str:
        """Never root: the caller's uid:gid, or the image's own user when the caller is root."""
        if self.user:
            return self.user
        if os.getuid() != 0:
            return invoking_user()
        return image_user(self.client.images.get(ref))

    def prepare(self, variants: Iterable[Variant], say: Say) -> list[Prepared]:
        return [self.builder.ensure(v, say) for v in variants]

    def run(self, step: Step, run_dir: Path, say: Say) -> StageRun:
        variant = step.variant
        self.builder.ensure(variant, say)
        from docker.types import Mount

        request = dict(step.request)
        mounts = [Mount(RUN_MOUNT, str(run_dir), type="bind")]
        for key, mount in HOST_PATHS.items():  # the user's files, read-only, at fixed places
            if request.get(key):
                host = Path(request[key]).resolve()
                request[key] = f"{mount}/{host.name}"
                mounts.append(Mount(request[key], str(host), type="bind", read_only=True))
        write_request(run_dir, step.work, request)
        ref = self.builder.ref(variant)
        user = self.user_for(ref)
        uid, _, gid = user.partition(":")
        rundir.grant(run_dir, step.work, int(uid), int(gid or uid))
        tail = LogTail(run_dir, step, say)
        started = time.monotonic()
        container = None
        peak: float | None = None
        # Before the container exists: a kill -9 between dockerd creating it
        # and this process learning its ID still has it removed, by its label.
        owner = f"{OWNER_LABEL}={procs.owner_token()}"
        procs.GUARD_PROCESS.watch("label", owner)
        try:
            container = self.client.containers.run(
                ref,
                command=[f"{CODE_ROOT}/{step.script_rel}", RUN_MOUNT, step.work],
                detach=True,
                mounts=mounts,
                labels={RUN_LABEL: str(run_dir), OWNER_LABEL: owner.split("=", 1)[1]},
                **hardening(self.memory, user=user),
            )
            procs.GUARD_PROCESS.watch("ctr", container.id)
            memory = MemorySampler(container)
            for chunk in container.logs(stream=True, follow=True):
                for line in chunk.decode("utf-8", "replace").splitlines():
                    tail.add(line)
            status = container.wait()
            code = int(status.get("StatusCode", 1))
            peak = memory.peak_mb()
            container.reload()
            if code == 137 and container.attrs.get("State", {}).get("OOMKilled"):
                tail.add(f"killed: out of memory (limit {self.memory})")
        except Exception as exc:  # noqa: BLE001
            import docker

            if isinstance(exc, docker.errors.DockerException):
                raise ConversionError(f"{variant.stage} container ({variant.tag}) could not run: {exc}") from None
            raise
        finally:
            lines = tail.close()
            if container is not None:  # on success, failure and Ctrl-C alike
                try:
                    container.remove(force=True)
                except Exception:  # noqa: BLE001 - already gone is fine
                    pass
                procs.GUARD_PROCESS.release("ctr", container.id)
            else:  # Ctrl-C while dockerd was still starting it: ours by the run's label (steps run one at a time)
                remove_labelled(self.client, f"{RUN_LABEL}={run_dir}")
        return StageRun(
            variant.stage, variant, code, read_result(run_dir, step.work), time.monotonic() - started, lines, peak
        )

    def identity(self, variant: Variant) -> dict:
        return {"runtime": "docker", "image_key": self.builder.key(variant), "ref": self.builder.ref(variant)}

    def freeze(self, variant: Variant) -> dict:
        ref = self.builder.ref(variant)
        image = self.client.images.get(ref)

        def ask() -> list[str]:
            said = self.client.containers.run(
                ref,
                command=["-m", "pip", "freeze"],
                remove=True,
                stderr=False,
                **hardening(self.memory, user=self.user),
            )
            return said.decode("utf-8", "replace").splitlines()

        memo = default_root() / "freeze" / (image.id.replace(":", "-") + ".json")
        return {
            "image_id": image.id,
            "repo_digests": image.attrs.get("RepoDigests") or [],
            "pip_freeze": remembered(memo, image.id, ask) or [],
        }
