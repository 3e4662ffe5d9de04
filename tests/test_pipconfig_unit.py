"""Package-index settings are read as pip reads them and handed to uv and
Docker builds: what makes convertctl work behind a TLS-intercepting proxy."""

from __future__ import annotations

from convertctl.pipconfig import load_settings


def test_files_then_environment_then_flags(tmp_path):
    low, high = tmp_path / "low.conf", tmp_path / "high.conf"
    low.write_text("[global]\nindex-url = https://low/simple\nfind-links = /wheels\n")
    high.write_text("[install]\nextra-index-url = https://a/simple\n  https://b/simple\ncert = /etc/proxy.pem\n")
    s = load_settings(files=[low, high], environ={})
    assert s.index_url == "https://low/simple"
    assert s.extra_index_urls == ["https://a/simple", "https://b/simple"]
    assert s.find_links == ["/wheels"] and s.cert == "/etc/proxy.pem"
    s = load_settings(files=[low, high], environ={"PIP_INDEX_URL": "https://env/simple"})
    assert s.index_url == "https://env/simple"
    s = load_settings(ca_bundle="/my/ca.pem", index_url="https://flag/simple", files=[low, high], environ={})
    assert (s.index_url, s.cert) == ("https://flag/simple", "/my/ca.pem")


def test_uv_gets_pip_equivalent_arguments(tmp_path):
    constraints = tmp_path / "c.txt"
    constraints.write_text("torch<=2.14.1\n")
    conf = tmp_path / "pip.conf"
    conf.write_text(
        f"[global]\nextra-index-url = file:///mirror\nconstraint = {constraints}\n"
        "trusted-host = proxy.local\ncert = /ca.pem\n"
    )
    s = load_settings(files=[conf], environ={})
    args = s.uv_args()
    assert args[args.index("--extra-index-url") + 1] == "file:///mirror"
    assert args[args.index("--constraint") + 1] == str(constraints)
    assert args[args.index("--index-strategy") + 1] == "unsafe-best-match"
    assert "--allow-insecure-host" in args
    assert s.env()["SSL_CERT_FILE"] == "/ca.pem"


def test_docker_builds_get_only_remote_indexes(tmp_path):
    conf = tmp_path / "pip.conf"
    conf.write_text("[global]\nindex-url = https://mirror/simple\nextra-index-url = file:///local https://x/simple\n")
    args = load_settings(files=[conf], environ={}).docker_build_args()
    assert args == {"PIP_INDEX_URL": "https://mirror/simple", "PIP_EXTRA_INDEX_URL": "https://x/simple"}


def test_cert_falls_back_to_ssl_cert_file(tmp_path):
    s = load_settings(files=[], environ={"SSL_CERT_FILE": "/etc/ssl/x.pem"})
    assert s.cert == "/etc/ssl/x.pem"
