"""What reaches the logs (issue #15, item 15): no mail in them off DEBUG, one line for a bad Host.

(a) Off DEBUG without EMAIL_HOST, mail goes to files in EMAIL_FILE_PATH, never
to the console (whose output is the logs: live password-reset links); naming
the console backend there stops every command (check auction_site.E001), and
`check --deploy` warns that mail is only written to files (auction_site.W001).
(c) A request for a host outside ALLOWED_HOSTS is one WARNING line without a traceback.
"""

import logging
import subprocess

import pytest

from testsupport.ports import free_ports
from testsupport.servers import BASE_DIR, production_env

MANAGE = [str(BASE_DIR / ".venv" / "bin" / "python"), str(BASE_DIR / "manage.py")]
SECRET = "reset-link-token-7f3a9c"
SEND = f"from django.core.mail import send_mail; send_mail('Reset', 'https://x/reset/?token={SECRET}', None, ['a@b.c'])"


def manage(tmp_path, *args: str, **env: str) -> subprocess.CompletedProcess:
    environment = production_env(SQLITE_PATH=str(tmp_path / "db.sqlite3"), EMAIL_FILE_PATH=str(tmp_path / "mail"))
    environment.pop("EMAIL_HOST", None)
    environment.pop("EMAIL_BACKEND", None)
    environment.update(env)
    return subprocess.run(
        [*MANAGE, *args], env=environment, cwd=BASE_DIR, capture_output=True, text=True, timeout=120, check=False
    )


def test_off_debug_without_a_mail_server_mail_goes_to_files_not_to_the_logs(tmp_path):
    sent = manage(tmp_path, "shell", "-c", SEND)

    assert sent.returncode == 0, sent.stderr
    assert SECRET not in sent.stdout + sent.stderr
    files = list((tmp_path / "mail").iterdir())
    assert len(files) == 1
    assert SECRET in files[0].read_text()


@pytest.mark.parametrize("command", [["check"], ["serve", "--no-clock", "--port", "{port}"]])
def test_off_debug_the_console_backend_stops_the_server_from_starting(tmp_path, command):
    command = [part.format(port=free_ports(1)) for part in command]

    refused = manage(tmp_path, *command, EMAIL_BACKEND="django.core.mail.backends.console.EmailBackend")

    assert refused.returncode != 0
    assert "auction_site.E001" in refused.stderr


def test_check_deploy_says_that_mail_is_only_written_to_files(tmp_path):
    checked = manage(tmp_path, "check", "--deploy")

    assert checked.returncode == 0, checked.stderr
    assert "auction_site.W001" in checked.stdout + checked.stderr


def test_the_console_backend_stays_the_development_default(tmp_path):
    sent = manage(
        tmp_path,
        "shell",
        "-c",
        "from django.conf import settings; print(settings.EMAIL_BACKEND)",
        "--no-imports",
        DEBUG="true",
    )

    assert sent.stdout.strip() == "django.core.mail.backends.console.EmailBackend"


@pytest.mark.django_db
def test_a_bad_host_header_is_one_warning_line_without_a_traceback(client, caplog):
    caplog.set_level(logging.INFO)

    response = client.get("/api/lots/", HTTP_HOST="evil.example")

    assert response.status_code == 400
    records = [r for r in caplog.records if r.name == "django.security.DisallowedHost"]
    assert len(records) == 1
    assert records[0].levelno == logging.WARNING
    assert records[0].exc_info is None and records[0].exc_text is None
    assert "evil.example" in records[0].getMessage()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
