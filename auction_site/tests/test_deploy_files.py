"""The deployment files: docker-compose.yml, deploy/nginx.conf, the Dockerfile, the README's settings table.

The compose file is read with PyYAML (its structure: services, health checks,
environment, depends_on) and, where Debian's `docker-compose` is installed,
validated by `docker-compose config`; nginx's own `nginx -t` checks the proxy.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest
import yaml

from testsupport.servers import BASE_DIR

COMPOSE_FILE = BASE_DIR / "docker-compose.yml"
NGINX_CONF = BASE_DIR / "deploy" / "nginx.conf"
DOCKERFILE = BASE_DIR / "Dockerfile"
UNDER_CI = os.environ.get("CI", "").lower() == "true"
APP_SERVICES = ("migrate", "web", "clock")
LONG_RUNNING = ("postgres", "redis", "web", "clock", "nginx", "mailpit")
COMPOSE_ENV = {"SECRET_KEY": "k" * 50, "POSTGRES_PASSWORD": "pw-for-the-test", "ALLOWED_HOSTS": "auctions.example.com"}


def compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())


def need(tool: str) -> str:
    """The tool's path; under CI=true its absence fails the test (.ci/run installs it)."""
    path = shutil.which(tool)
    if path is None:
        message = (
            f"{tool} is not installed (apt-get install {'docker-compose' if 'compose' in tool else 'nginx-light'})"
        )
        if UNDER_CI:
            pytest.fail(message)
        pytest.skip(message)
    return path


# --- docker-compose.yml, read as YAML ---------------------------------------------------


def test_compose_has_the_whole_stack():
    services = compose()["services"]

    assert set(services) == {"postgres", "redis", "migrate", "web", "clock", "nginx", "mailpit"}
    assert services["web"]["command"][:3] == ["python", "manage.py", "serve"]
    assert "--no-clock" in services["web"]["command"]
    assert services["clock"]["command"] == ["python", "manage.py", "run_clock"]
    assert services["migrate"]["command"] == ["python", "manage.py", "migrate", "--noinput"]
    assert services["migrate"]["restart"] == "no"


def test_web_scales_out_no_fixed_host_port_and_no_container_name():
    web = compose()["services"]["web"]

    assert "ports" not in web
    assert "container_name" not in web
    assert web["expose"] == ["8000"]


def test_only_the_proxy_and_mailpit_ui_publish_ports():
    services = compose()["services"]

    published = {name for name, service in services.items() if service.get("ports")}
    assert published == {"nginx", "mailpit"}
    assert all(port.startswith("127.0.0.1:") for port in services["mailpit"]["ports"])


@pytest.mark.parametrize("name", LONG_RUNNING)
def test_every_long_running_service_has_a_health_check(name):
    check = compose()["services"][name]["healthcheck"]

    assert check["test"][0] in {"CMD", "CMD-SHELL"}
    assert len(check["test"]) > 1
    assert check["interval"] and check["retries"] >= 3


def test_the_web_health_check_asks_for_readiness():
    assert any("/api/ready/" in part for part in compose()["services"]["web"]["healthcheck"]["test"])


def test_migrations_run_once_before_web_and_clock():
    services = compose()["services"]

    assert services["migrate"]["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    for name in ("web", "clock"):
        depends_on = services[name]["depends_on"]
        assert depends_on["migrate"] == {"condition": "service_completed_successfully"}
        assert depends_on["postgres"] == {"condition": "service_healthy"}
        assert depends_on["redis"] == {"condition": "service_healthy"}
    assert services["nginx"]["depends_on"] == {"web": {"condition": "service_healthy"}}


def test_app_services_share_one_production_environment():
    services = compose()["services"]
    environments = [services[name]["environment"] for name in APP_SERVICES]

    assert environments[0] == environments[1] == environments[2]
    env = environments[0]
    assert env["DEBUG"] == "false"
    assert env["SECRET_KEY"].startswith("${SECRET_KEY:?")
    assert env["DATABASE_URL"].startswith("postgres://") and "@postgres:5432/" in env["DATABASE_URL"]
    assert env["REDIS_URL"] == "redis://redis:6379/0"
    assert env["AUCTION_CLOCK_IN_PROCESS"] == "false"
    assert env["SECURE_PROXY_SSL_HEADER"] == "true"
    assert env["EMAIL_HOST"] == "${EMAIL_HOST:-mailpit}"


def test_uploaded_media_are_shared_by_every_web_container_and_the_proxy():
    services = compose()["services"]

    assert "media:/app/media" in services["web"]["volumes"]
    assert "media:/srv/media:ro" in services["nginx"]["volumes"]
    assert "./deploy/nginx.conf:/etc/nginx/nginx.conf:ro" in services["nginx"]["volumes"]


def test_every_variable_the_compose_file_sets_is_documented_in_the_readme():
    readme = (BASE_DIR / "README.md").read_text()
    env = compose()["services"]["web"]["environment"]

    undocumented = [name for name in env if f"`{name}`" not in readme]
    assert undocumented == []


def test_every_variable_the_settings_read_is_in_the_readme_table():
    settings_source = (BASE_DIR / "auction_site" / "settings.py").read_text()
    names = set(re.findall(r"""env\.(?:bool|int|float|str|list)\(\s*"([A-Z_]+)\"""", settings_source))
    table = "\n".join(line for line in (BASE_DIR / "README.md").read_text().splitlines() if line.startswith("| `"))

    assert len(names) > 30
    assert sorted(name for name in names if f"`{name}`" not in table) == []


# --- docker-compose config ------------------------------------------------------------


def _compose_config(env: dict[str, str]) -> subprocess.CompletedProcess:
    tool = need("docker-compose")
    clean = {k: v for k, v in os.environ.items() if k not in COMPOSE_ENV}
    return subprocess.run(
        [tool, "--project-directory", str(BASE_DIR), "-f", str(COMPOSE_FILE), "config"],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_docker_compose_config_accepts_the_file():
    result = _compose_config(COMPOSE_ENV)

    assert result.returncode == 0, result.stderr
    resolved = yaml.safe_load(result.stdout)
    web = resolved["services"]["web"]
    assert web["environment"]["SECRET_KEY"] == "k" * 50
    assert web["environment"]["DATABASE_URL"] == "postgres://auction:pw-for-the-test@postgres:5432/auction"
    assert web["environment"]["ALLOWED_HOSTS"] == "auctions.example.com"
    assert web["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert resolved["services"]["nginx"]["ports"][0]["target"] == 80


def test_docker_compose_config_refuses_to_start_without_a_secret_key():
    result = _compose_config({k: v for k, v in COMPOSE_ENV.items() if k != "SECRET_KEY"})

    assert result.returncode != 0
    assert "set SECRET_KEY" in result.stderr


# --- deploy/nginx.conf ------------------------------------------------------------------


def test_nginx_accepts_the_config(tmp_path):
    nginx = need("nginx")

    result = subprocess.run(
        [nginx, "-t", "-p", str(tmp_path), "-c", str(NGINX_CONF)], capture_output=True, text=True, timeout=30
    )

    assert result.returncode == 0, result.stderr
    assert "syntax is ok" in result.stderr


def test_nginx_balances_http_and_websockets_across_web():
    conf = NGINX_CONF.read_text()
    websocket = conf[conf.index("location /ws/") :]
    websocket = websocket[: websocket.index("}")]

    assert "set $web_upstream http://web:8000;" in conf
    assert "resolver 127.0.0.11" in conf
    assert "proxy_set_header Upgrade $http_upgrade;" in websocket
    assert "proxy_set_header Connection $connection_upgrade;" in websocket
    assert re.search(r"proxy_read_timeout (\d+)s;", websocket).group(1) == "3600"
    assert "proxy_set_header X-Request-ID $request_id_out;" in conf
    assert "proxy_set_header X-Forwarded-Proto $forwarded_proto;" in conf


def test_nginx_logs_no_query_strings():
    conf = NGINX_CONF.read_text()
    log_format = conf[conf.index("log_format") : conf.index("access_log")]

    assert '"path":"$uri"' in log_format
    for leaky in ("$request_uri", "$args", "$query_string", '"$request"', "$http_authorization"):
        assert leaky not in log_format


# --- Dockerfile -------------------------------------------------------------------------


def test_dockerfile_collects_static_files_and_runs_as_a_user():
    dockerfile = DOCKERFILE.read_text()

    assert re.search(r"^FROM python:3\.11-", dockerfile, re.MULTILINE)
    assert "pip install -r requirements.txt" in dockerfile
    assert "manage.py collectstatic --noinput" in dockerfile
    assert re.search(r"^USER app$", dockerfile, re.MULTILINE)


def test_dockerfile_default_command_is_the_compose_web_command():
    cmd = re.search(r"^CMD (\[.*\])$", DOCKERFILE.read_text(), re.MULTILINE).group(1)

    assert yaml.safe_load(cmd) == compose()["services"]["web"]["command"]


def test_docker_build_context_leaves_out_local_state():
    ignored = (BASE_DIR / ".dockerignore").read_text().split()

    for entry in (".git", ".venv", ".env", "db.sqlite3*", "media", "staticfiles"):
        assert entry in ignored


# --- Makefile ---------------------------------------------------------------------------


def test_make_serve_prod_runs_the_launcher_with_web_processes_and_services():
    make = shutil.which("make")
    assert make is not None

    result = subprocess.run(
        [make, "-n", "serve-prod", "WEB_PROCESSES=3"], cwd=BASE_DIR, capture_output=True, text=True, timeout=30
    )

    assert result.returncode == 0, result.stderr
    [line] = [line for line in result.stdout.splitlines() if "serve_prod" in line]
    assert "WEB_PROCESSES=3 .venv/bin/python manage.py serve_prod" in line
    assert "DATABASE_URL=${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/auction}" in result.stdout
    assert "REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379/0}" in result.stdout
