"""The shipped deployment: docker-compose.yml behind a TLS-terminating proxy, Flower behind
it with real credentials, and production settings that refuse .env.example's examples."""

import shutil
import subprocess
import sys
import urllib.error
import urllib.request

import pytest
import yaml

from tcp_dashboard.settings.flower import flower_auth_problem
from tests.helpers import ROOT, free_port, wait_until

GOOD_SECRET = "s" * 60


def compose_project(tmp_path, **env: str):
    """The repository's compose file and deploy/ with .env copied from .env.example."""
    shutil.copy(ROOT / "docker-compose.yml", tmp_path)
    shutil.copytree(ROOT / "deploy", tmp_path / "deploy")
    lines = (ROOT / ".env.example").read_text().splitlines()
    lines = [line for line in lines if line.split("=", 1)[0] not in env]
    lines += [f"{name}={value}" for name, value in env.items()]
    (tmp_path / ".env").write_text("\n".join(lines) + "\n")
    return tmp_path


def compose_config(directory):
    return subprocess.run(
        ["docker-compose", "config"], cwd=directory, capture_output=True, text=True, timeout=60
    )


def test_docker_compose_publishes_only_the_tls_proxy_with_flower_behind_it(tmp_path):
    result = compose_config(compose_project(tmp_path))
    assert result.returncode == 0, result.stderr
    services = yaml.safe_load(result.stdout)["services"]
    published = {name: service.get("ports", []) for name, service in services.items()}
    assert {name for name, ports in published.items() if ports} == {"proxy"}
    assert {port["target"] for port in published["proxy"]} == {80, 443}
    proxy = services["proxy"]
    assert proxy["environment"]["SITE_ADDRESS"] == "dashboard.example.com"
    caddyfile_mount = f"{tmp_path / 'deploy' / 'Caddyfile'}:/etc/caddy/Caddyfile:ro"
    assert caddyfile_mount in proxy["volumes"]
    caddyfile = (ROOT / "deploy" / "Caddyfile").read_text()
    assert "{$SITE_ADDRESS}" in caddyfile
    assert "reverse_proxy web:8000" in caddyfile and "reverse_proxy flower:5555" in caddyfile
    assert "--url_prefix=flower" in services["flower"]["command"]
    for name in ("web", "collector-worker", "worker", "beat", "flower"):
        env = services[name]["environment"]
        assert env["DJANGO_SETTINGS_MODULE"] == "tcp_dashboard.settings.production"
        assert env["SECURE_PROXY_SSL_HEADER"] == "true"
        assert env["ALLOWED_HOSTS"].split(",")[0] == "dashboard.example.com"
        assert env["CSRF_TRUSTED_ORIGINS"] == "https://dashboard.example.com"


def test_docker_compose_needs_a_site_address(tmp_path):
    result = compose_config(compose_project(tmp_path, SITE_ADDRESS=""))
    assert result.returncode != 0
    assert "set SITE_ADDRESS in .env" in result.stderr


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("", "FLOWER_BASIC_AUTH must be set"),
        ("admin:change-me", "example password"),
        ("admin", "user:password pairs"),
        ("ops:short", "at least 12 characters"),
        (
            "ops:a-real-long-password,admin:change-me",
            "example password of .env.example for 'admin'",
        ),
        ("ops:a-real-long-password", ""),
    ],
)
def test_flower_credentials_must_be_real(value, problem):
    found = flower_auth_problem(value)
    assert (problem in found) if problem else found == ""


def production_env(**extra: str) -> dict[str, str]:
    import os

    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="tcp_dashboard.settings.production",
        SECRET_KEY=GOOD_SECRET,
        PYTHONUNBUFFERED="1",
    )
    env.pop("DB_POOL_MAX_COMMAND", None)
    env.update(extra)
    return env


def flower(port: int, credentials: str) -> subprocess.Popen:
    command = [sys.executable, "-m", "celery", "-A", "tcp_dashboard", "flower"]
    command += ["--address=127.0.0.1", f"--port={port}", "--url_prefix=flower"]
    return subprocess.Popen(
        command,
        cwd=ROOT,
        env=production_env(FLOWER_BASIC_AUTH=credentials),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_flower_refuses_to_start_with_the_example_credentials():
    process = flower(free_port(), "admin:change-me")
    output, _ = process.communicate(timeout=60)
    assert process.returncode != 0
    assert "FLOWER_BASIC_AUTH still holds the example password" in output


def test_flower_starts_with_real_credentials_and_asks_for_them():
    port = free_port()
    process = flower(port, "ops:a-real-long-password")
    url = f"http://127.0.0.1:{port}/flower/"

    def status(credentials: str | None) -> int | None:
        request = urllib.request.Request(url)
        if credentials:
            import base64

            token = base64.b64encode(credentials.encode()).decode()
            request.add_header("Authorization", f"Basic {token}")
        try:
            with urllib.request.urlopen(request, timeout=2) as response:
                return response.status
        except urllib.error.HTTPError as error:
            return error.code
        except OSError:
            assert process.poll() is None, process.stdout.read()
            return None

    try:
        assert wait_until(lambda: status(None), timeout=60, message="Flower to answer") == 401
        assert status("ops:a-real-long-password") == 200
        assert status("admin:change-me") == 401
    finally:
        process.terminate()
        process.wait(timeout=20)


def test_production_refuses_the_example_database_password(tmp_path):
    env = production_env(
        DATABASE_URL="postgresql://tcp:change-me@127.0.0.1:5432/tcp_dashboard",
        VAR_DIR=str(tmp_path),
    )
    result = subprocess.run(
        [sys.executable, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert result.returncode != 0
    assert "POSTGRES_PASSWORD=change-me" in result.stderr
