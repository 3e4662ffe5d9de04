"""A Docker stage's peak memory, as the report's stage rows record it
(runtimes/docker.py MemorySampler): a container that holds 300 MB is
measured at about that."""

from __future__ import annotations

import pytest
from conftest import requires_docker

pytestmark = [pytest.mark.docker, requires_docker]


def test_a_containers_peak_memory_is_measured():
    import docker
    from convertctl.runtimes.docker import MemorySampler

    client = docker.from_env()
    # A base image CI has either way: the catalog's (pulled in ci.yml) or .ci/docker-up's own.
    names = {t for image in client.images.list() for t in image.tags}
    image = next((n for n in ("python:3.11-slim", "convertctl-base:bookworm") if n in names), None)
    assert image, f"neither python:3.11-slim nor convertctl-base:bookworm is here ({sorted(names)[:10]})"
    holds = "x = bytearray(300 * 2**20); x[::4096] = b'1' * len(x[::4096]); import time; time.sleep(4)"
    container = client.containers.run(image, ["python3", "-c", holds], detach=True, network_disabled=True)
    try:
        sampler = MemorySampler(container)
        assert container.wait(timeout=120)["StatusCode"] == 0
        peak = sampler.peak_mb()
    finally:
        container.remove(force=True)
    assert peak is not None and 280 < peak < 400, peak
