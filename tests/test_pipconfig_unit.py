"""Package-index settings are what pip itself resolves (`pip config list`),
handed to uv and Docker builds: what makes convertctl work behind a
TLS-intercepting proxy. pip, not a re-implementation, decides precedence."""

from __future__ import annotations

import os

from convertctl.store.pipconfig import load_settings


def isolated(tmp_path, **extra) -> dict:
    """An environment where pip sees only the files a test writes (and the
    machine's /etc/pip.conf, which sets neither an index nor extra ones)."""
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    return {
        "PATH": os.environ["PATH"],
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_CONFIG_DIRS": str(tmp_path / "no-xdg"),
        **extra,
    }


def user_config(tmp_path, text: str) -> None:
    path = tmp_path / "home" / ".config" / "pip" / "pip.conf"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_pip_config_file_beats_the_user_file_as_in_pip(tmp_path):
    env = isolated(tmp_path)
    user_config(tmp_path, "[global]\nindex-url = https://user/simple\nfind-links = /wheels\n")
    assert load_settings(environ=env).index_url == "https://user/simple"
    high = tmp_path / "high.conf"
    high.write_text("[install]\nextra-index-url = https://a/simple\n  https://b/simple\ncert = /etc/proxy.pem\n")
    high.write_text(high.read_text() + "[global]\nindex-url = https://pip-config-file/simple\n")
    s = load_settings(environ={**env, "PIP_CONFIG_FILE": str(high)})
    assert s.index_url == "https://pip-config-file/simple"
    assert s.extra_index_urls == ["https://a/simple", "https://b/simple"]
    assert s.cert == "/etc/proxy.pem"
    # pip skips the user file altogether when PIP_CONFIG_FILE names one: a
    # reader merging every file (as convertctl once did) would keep /wheels.
    assert s.find_links == []


def test_environment_beats_files_and_flags_beat_both(tmp_path):
    env = isolated(tmp_path)
    user_config(tmp_path, "[global]\nindex-url = https://low/simple\n[install]\nindex-url = https://install/simple\n")
    assert load_settings(environ=env).index_url == "https://install/simple", "[install] beats [global] for installs"
    s = load_settings(environ={**env, "PIP_INDEX_URL": "https://env/simple"})
    assert s.index_url == "https://env/simple"
    s = load_settings(ca_bundle="/my/ca.pem", index_url="https://flag/simple", environ=env)
    assert (s.index_url, s.cert) == ("https://flag/simple", "/my/ca.pem")


def test_uv_gets_pip_equivalent_arguments(tmp_path):
    constraints = tmp_path / "c.txt"
    constraints.write_text("torch<=2.14.1\n")
    conf = tmp_path / "pip.conf"
    conf.write_text(
        f"[global]\nextra-index-url = file:///mirror\nconstraint = {constraints}\n"
        "trusted-host = proxy.local\ncert = /ca.pem\n"
    )
    s = load_settings(environ=isolated(tmp_path, PIP_CONFIG_FILE=str(conf)))
    args = s.uv_args()
    assert args[args.index("--extra-index-url") + 1] == "file:///mirror"
    assert args[args.index("--constraint") + 1] == str(constraints)
    assert args[args.index("--index-strategy") + 1] == "unsafe-best-match"
    assert "--allow-insecure-host" in args
    assert s.env()["SSL_CERT_FILE"] == "/ca.pem"


def test_docker_builds_get_only_remote_indexes(tmp_path):
    conf = tmp_path / "pip.conf"
    conf.write_text("[global]\nindex-url = https://mirror/simple\nextra-index-url = file:///local https://x/simple\n")
    args = load_settings(environ=isolated(tmp_path, PIP_CONFIG_FILE=str(conf))).docker_build_args()
    assert args == {"PIP_INDEX_URL": "https://mirror/simple", "PIP_EXTRA_INDEX_URL": "https://x/simple"}


def test_cert_falls_back_to_ssl_cert_file(tmp_path):
    # PIP_CONFIG_FILE=/dev/null: pip reads no file at all
    s = load_settings(environ=isolated(tmp_path, PIP_CONFIG_FILE=os.devnull, SSL_CERT_FILE="/etc/ssl/x.pem"))
    assert s.cert == "/etc/ssl/x.pem"
