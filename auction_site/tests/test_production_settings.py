"""Production settings, as a deployment gets them: from the environment, in a fresh process."""

from __future__ import annotations

import json
import re
import secrets
import string
import subprocess

import pytest

from testsupport.servers import BASE_DIR, MANAGE, production_env


def strong_secret_key() -> str:
    alphabet = string.ascii_letters + string.digits + "!@#%^&*(-_=+)"
    return "".join(secrets.choice(alphabet) for _ in range(50))


def manage(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*MANAGE, *args],
        env=production_env(**env),
        cwd=BASE_DIR,
        capture_output=True,
        text=True,
        timeout=180,
    )


def deploy_env(**overrides: str) -> dict[str, str]:
    # HTTPS is the production default: the helper's plain-HTTP "false" is dropped.
    env = {
        "DEBUG": "0",
        "SECRET_KEY": strong_secret_key(),
        "ALLOWED_HOSTS": "example.com",
        "HTTPS": "",
        "EMAIL_HOST": "smtp.example.com",
    }
    env.update(overrides)
    return env


@pytest.mark.reliability
def test_check_deploy_is_clean_with_production_env():
    result = manage("check", "--deploy", "--fail-level", "WARNING", **deploy_env())

    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues (0 silenced)." in result.stdout


def test_check_deploy_warns_when_the_site_is_served_over_plain_http():
    result = manage("check", "--deploy", "--fail-level", "WARNING", **deploy_env(HTTPS="false"))

    assert result.returncode != 0
    for warning in ("security.W004", "security.W008", "security.W012", "security.W016"):
        assert warning in result.stderr


def test_check_deploy_catches_a_weak_secret_key():
    result = manage("check", "--deploy", "--fail-level", "WARNING", **deploy_env(SECRET_KEY="too-short"))

    assert result.returncode != 0
    assert "security.W009" in result.stderr


def test_debug_off_without_secret_key_refuses_to_start():
    result = manage("check", **deploy_env(SECRET_KEY=""))

    assert result.returncode != 0
    assert "SECRET_KEY must be set when DEBUG is off" in result.stderr


def test_a_secret_key_naming_an_unset_variable_refuses_to_start_and_says_how_to_write_a_dollar():
    result = manage("check", **deploy_env(SECRET_KEY="$" + strong_secret_key()))

    assert result.returncode != 0
    assert "SECRET_KEY must be set when DEBUG is off" in result.stderr
    assert "write `\\$` for a literal `$`" in result.stderr


def test_environment_values_are_typed_trimmed_and_empty_means_the_default():
    key = strong_secret_key()
    values = _settings_as_json(
        "SECRET_KEY", "SIMPLE_JWT", "ALLOWED_HOSTS", "CORS_ALLOWED_ORIGINS", "EMAIL_PORT", "WS_PING_SECONDS",
        "AUCTION_STAFF_CAN_BID",
        **deploy_env(
            SECRET_KEY="\\$" + key,
            JWT_SIGNING_KEY="$AUCTION_TEST_SIGNING_KEY",
            AUCTION_TEST_SIGNING_KEY="signing-" + key,
            ALLOWED_HOSTS=" example.com , api.example.com ",
            CORS_ALLOWED_ORIGINS="https://shop.example.com,,",
            EMAIL_PORT="",
            WS_PING_SECONDS="  ",
            AUCTION_STAFF_CAN_BID="yes",
        ),
    )  # fmt: skip

    assert values["SECRET_KEY"] == "$" + key
    assert values["SIMPLE_JWT"]["SIGNING_KEY"] == "signing-" + key
    assert values["ALLOWED_HOSTS"] == ["example.com", "api.example.com"]
    assert values["CORS_ALLOWED_ORIGINS"] == ["https://shop.example.com"]
    assert values["EMAIL_PORT"] == 25
    assert values["WS_PING_SECONDS"] == 60.0
    assert values["AUCTION_STAFF_CAN_BID"] is True


def _settings_as_json(*names: str, **env: str) -> dict:
    code = f"import json; from django.conf import settings as s; print(json.dumps({{n: getattr(s, n, None) for n in {list(names)!r}}}, default=str))"
    result = manage("shell", "-c", code, **env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_https_settings_follow_the_environment():
    on = _settings_as_json(
        "SECURE_SSL_REDIRECT", "SESSION_COOKIE_SECURE", "CSRF_COOKIE_SECURE", "JWT_COOKIE_SECURE",
        "SECURE_HSTS_SECONDS", "SECURE_PROXY_SSL_HEADER", **deploy_env(SECURE_PROXY_SSL_HEADER="true"),
    )  # fmt: skip
    off = _settings_as_json(
        "SECURE_SSL_REDIRECT", "SESSION_COOKIE_SECURE", "SECURE_HSTS_SECONDS", "SECURE_PROXY_SSL_HEADER",
        **deploy_env(HTTPS="false"),
    )  # fmt: skip

    assert on == {
        "SECURE_SSL_REDIRECT": True,
        "SESSION_COOKIE_SECURE": True,
        "CSRF_COOKIE_SECURE": True,
        "JWT_COOKIE_SECURE": True,
        "SECURE_HSTS_SECONDS": 31_536_000,
        "SECURE_PROXY_SSL_HEADER": ["HTTP_X_FORWARDED_PROTO", "https"],
    }
    assert off == {
        "SECURE_SSL_REDIRECT": False,
        "SESSION_COOKIE_SECURE": False,
        "SECURE_HSTS_SECONDS": 0,
        "SECURE_PROXY_SSL_HEADER": None,
    }


def test_static_storage_is_whitenoise_manifest_only_off_debug():
    production = _settings_as_json("STORAGES", **deploy_env())
    development = _settings_as_json("STORAGES", DEBUG="1")

    assert production["STORAGES"]["staticfiles"]["BACKEND"] == "whitenoise.storage.CompressedManifestStaticFilesStorage"
    assert development["STORAGES"]["staticfiles"]["BACKEND"] == "django.contrib.staticfiles.storage.StaticFilesStorage"


def test_collectstatic_writes_hashed_and_compressed_files(static_root):
    manifest = json.loads((static_root / "staticfiles.json").read_text())
    hashed = manifest["paths"]["admin/css/base.css"]

    assert re.fullmatch(r"admin/css/base\.[0-9a-f]{12}\.css", hashed)
    assert (static_root / hashed).is_file()
    assert (static_root / f"{hashed}.gz").is_file()
