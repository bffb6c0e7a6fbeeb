"""`migrate` and `check_services` on a PostgreSQL database that does not exist: one line that says so, not the
pool's retries."""

import os
import subprocess

import pytest
from django.conf import settings

from testsupport.live_servers import MANAGE, PROJECT_ROOT, database_url_for_tests


def manage(database_url: str, *command: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in {"DJANGO_SETTINGS_MODULE", "REDIS_URL"}}
    env["DATABASE_URL"] = database_url
    return subprocess.run([*MANAGE, *command], env=env, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120)


def migrate(database_url: str) -> subprocess.CompletedProcess:
    return manage(database_url, "migrate", "--noinput")


@pytest.mark.services
def test_migrate_on_a_missing_database_says_so_in_one_line_and_fails():
    missing = settings.DATABASES["default"]["NAME"] + "_never_created"

    done = migrate(database_url_for_tests(missing))

    assert done.returncode == 1
    assert done.stdout == ""
    (line,) = done.stderr.splitlines()
    assert line.startswith(f'CommandError: database "{missing}" does not exist: create it first (`createdb ')
    assert line.endswith(f" {missing}`)")


def test_a_database_that_answers_passes_the_check(db):
    from ops.database import database_problem

    assert database_problem() is None


def test_migrate_with_no_postgresql_there_says_so_in_one_line_and_fails():
    done = migrate("postgres://postgres@127.0.0.1:1/auction")

    assert done.returncode == 1
    (line,) = done.stderr.splitlines()
    assert line.startswith("CommandError: PostgreSQL did not let us in: connection failed:")
    assert "Connection refused" in line


@pytest.mark.services
def test_check_services_names_a_missing_database_at_once():
    missing = settings.DATABASES["default"]["NAME"] + "_never_created"

    done = manage(database_url_for_tests(missing), "check_services")

    assert done.returncode == 1
    (line,) = done.stderr.splitlines()
    assert line.startswith(f'CommandError: database: database "{missing}" does not exist: create it first')
