"""The user's package-index settings, read the way pip reads them, so that
a venv built by uv, or a Docker build, sees the same index, mirrors,
find-links, constraints and CA bundle as the user's own `pip install`.
Users behind a TLS-intercepting proxy need exactly this (and so does this
project's CI, whose containers reach the index only with the host CA)."""

from __future__ import annotations

import ast
import os
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

KEYS = ("index-url", "extra-index-url", "find-links", "cert", "constraint", "trusted-host", "no-index")
# pip's own order for one option: [global], then the command's section, then PIP_* variables.
SECTIONS = ("global", "install", ":env:")


def _pip_commands() -> list[list[str]]:
    commands = [[sys.executable, "-m", "pip"]]
    for name in ("pip3", "pip"):
        found = shutil.which(name)
        if found:
            commands.append([found])
    return commands


def pip_config(environ: dict) -> dict:
    """{option: value} as pip itself resolves them: `pip config list` reads
    pip's files in pip's order (site config, PIP_CONFIG_FILE...) and PIP_*
    variables, so this never disagrees with the user's own `pip install`.
    Empty when no pip runs here."""
    for cmd in _pip_commands():
        try:
            proc = subprocess.run(
                [*cmd, "--disable-pip-version-check", "--no-input", "config", "list"],
                capture_output=True,
                text=True,
                env=environ,
                timeout=120,
            )
        except (OSError, subprocess.TimeoutExpired):
            continue
        if proc.returncode == 0:
            return _resolve(proc.stdout)
    return {}


def _resolve(listing: str) -> dict:
    by_section: dict = {}
    for line in listing.splitlines():
        name, sep, raw = line.partition("=")
        section, _, key = name.rpartition(".")
        if not sep or key not in KEYS:
            continue
        try:
            value = ast.literal_eval(raw)
        except (ValueError, SyntaxError):
            value = raw.strip("'\"")
        by_section.setdefault(section, {})[key] = str(value)
    values: dict = {}
    for section in SECTIONS:
        values.update(by_section.get(section, {}))
    return values


@dataclass
class IndexSettings:
    index_url: str = ""
    extra_index_urls: list = field(default_factory=list)
    find_links: list = field(default_factory=list)
    cert: str = ""
    constraints: list = field(default_factory=list)
    trusted_hosts: list = field(default_factory=list)
    no_index: bool = False

    def uv_args(self, constraints: bool = True) -> list[str]:
        """constraints=False for a hashed lock: it pins every package already,
        and uv's --require-hashes refuses unpinned constraint lines."""
        args: list[str] = []
        if self.no_index:
            args.append("--no-index")
        if self.index_url:
            args += ["--index-url", self.index_url]
        for url in self.extra_index_urls:
            args += ["--extra-index-url", url]
        for link in self.find_links:
            args += ["--find-links", link]
        for host in self.trusted_hosts:
            args += ["--allow-insecure-host", host]
        for constraint in self.constraints if constraints else []:
            if Path(constraint).is_file():
                args += ["--constraint", constraint]
        if self.extra_index_urls or self.find_links:
            # pip picks the best version across all indexes; uv's default takes
            # the first index that has a name at all, which breaks as soon as a
            # mirror holds only some versions. Ask uv to behave like pip.
            args += ["--index-strategy", "unsafe-best-match"]
        return args

    def env(self) -> dict:
        """Variables for installers (pip and uv both read these)."""
        env: dict[str, str] = {}
        if self.cert:
            env.update(SSL_CERT_FILE=self.cert, PIP_CERT=self.cert, REQUESTS_CA_BUNDLE=self.cert)
        return env

    def docker_build_args(self) -> dict:
        """Index settings for an image build; the CA travels as a file."""
        args = {}
        if self.index_url:
            args["PIP_INDEX_URL"] = self.index_url
        remote = [u for u in self.extra_index_urls if not u.startswith("file:")]
        if remote:
            args["PIP_EXTRA_INDEX_URL"] = " ".join(remote)
        if self.trusted_hosts:
            args["PIP_TRUSTED_HOST"] = " ".join(self.trusted_hosts)
        return args


class LazySettings:
    """IndexSettings read on first use: asking pip costs a subprocess, and
    most runs build nothing."""

    def __init__(self, loader):
        self._loader = loader
        self._value: IndexSettings | None = None

    def __getattr__(self, name: str):
        if name.startswith("_"):
            raise AttributeError(name)
        if self._value is None:
            self._value = self._loader()
        return getattr(self._value, name)


def settings_from_flags(ca_bundle=None, index_url: str = "", wheelhouse=None) -> IndexSettings:
    """load_settings for the --ca-bundle / --pip-index-url / --wheelhouse flags.
    A wheelhouse is one more find-links directory, looked at first: local
    venvs install from it, and Docker builds copy into their context the
    files of it (and of pip's find-links) that the lock names."""
    from convertctl.errors import UsageError

    if ca_bundle and not Path(ca_bundle).is_file():
        raise UsageError(f"--ca-bundle {ca_bundle}: no such file")
    if wheelhouse and not Path(wheelhouse).is_dir():
        raise UsageError(f"--wheelhouse {wheelhouse}: no such directory")

    def load() -> IndexSettings:
        settings = load_settings(str(ca_bundle or ""), index_url)
        if wheelhouse:
            settings.find_links = [str(Path(wheelhouse).resolve())] + settings.find_links
        return settings

    return LazySettings(load)  # type: ignore[return-value]


def load_settings(ca_bundle: str = "", index_url: str = "", environ: dict | None = None) -> IndexSettings:
    """pip's configuration (as pip resolves it), then convertctl's own flags."""
    environ = dict(os.environ) if environ is None else environ
    raw = pip_config(environ)

    def split(key: str) -> list:
        return shlex.split(raw.get(key, ""))

    cert = ca_bundle or raw.get("cert", "") or environ.get("SSL_CERT_FILE", "") or environ.get("REQUESTS_CA_BUNDLE", "")
    return IndexSettings(
        index_url=index_url or raw.get("index-url", ""),
        extra_index_urls=split("extra-index-url"),
        find_links=split("find-links"),
        cert=cert,
        constraints=split("constraint"),
        trusted_hosts=split("trusted-host"),
        no_index=raw.get("no-index", "").lower() in ("1", "true", "yes", "on"),
    )
