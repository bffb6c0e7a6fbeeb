"""A tiny run of `make bench`, so the benchmark cannot rot: S1 to S4 and the clock end to end (about 2 minutes)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
from django.conf import settings

from bench.harness import drop_database, recreate_database
from testsupport.live_servers import database_url_for_tests

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def database_exists(name: str) -> bool:
    with psycopg.connect(database_url_for_tests("postgres")) as conn:
        return conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone() is not None


@pytest.fixture
def bench_database():
    """A database of the benchmark's own on the tests' server: the run drops and recreates it; dropped after the test."""
    url = database_url_for_tests(settings.DATABASES["default"]["NAME"] + "_bench_smoke")
    yield url
    drop_database(url)


@pytest.mark.services
def test_the_benchmark_database_is_dropped_even_with_someone_connected():
    url = database_url_for_tests(settings.DATABASES["default"]["NAME"] + "_drop_check")
    name = url.rsplit("/", 1)[1]
    recreate_database(url)
    assert database_exists(name)

    with psycopg.connect(url):
        drop_database(url)

    assert not database_exists(name)
    drop_database(url)  # Gone already: nothing to do, no error.


@pytest.mark.services
def test_smoke_run_measures_every_scenario_and_checks_invariants(tmp_path, bench_database):
    command = [sys.executable, "-m", "bench", "--smoke", "--no-plots", "--out", str(tmp_path)]
    command += ["--database-url", bench_database, "--redis-url", settings.REDIS_URL]
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    done = subprocess.run(command, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=900, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]

    (result_file,) = tmp_path.glob("*.json")
    results = json.loads(result_file.read_text())
    assert (tmp_path / result_file.with_suffix(".md").name).exists()
    s1 = results["s1"]
    for transport in ("ws", "rest"):
        assert all(run["accepted"] > 0 for run in s1[transport]), s1[transport]
        assert s1[f"invariants_{transport}"]["hold"], s1[f"invariants_{transport}"]
    app = [run for run in results["s2"]["runs"] if run["server"] == "app"]
    baseline = [run for run in results["s2"]["runs"] if run["server"] == "baseline"]
    assert app and baseline
    for run in app + baseline:
        assert run["finished"], run
        assert run["events"] > 0 and run["delivered_share"] == 1.0 and run["in_order"], run
        assert run["bids_offered"] > 0 and run["accepted_share"] is not None, run
    s3 = results["s3"]
    for cycle in s3["app"]:
        assert cycle["open"] == cycle["requested"] == cycle["server_open"], cycle
        assert cycle["server_open_after_close"] == 0, cycle
        assert cycle["kib_per_connection"] is not None and cycle["handshakes_per_s"] > 0, cycle
        # Nothing left in Redis by the sockets (keys written before the cycle may expire meanwhile).
        assert cycle["redis_keys"]["after"] <= cycle["redis_keys"]["before"], cycle
    assert all(cycle["open"] == cycle["requested"] for cycle in s3["baseline"]), s3["baseline"]
    s4 = results["s4"]
    for run in s4["runs"] + s4["constant"]:
        assert run["rate"] > 0 and not run["errors"], run
    assert all(b["accepted"] for b in s4["bidding"]), s4["bidding"]
    assert s4["queries_per_request"] <= 3
    clock = results["clock"]
    assert [(run["clocks"], run["redis"]) for run in clock["runs"]] == [
        (1, "up"),
        (2, "up"),
        (1, "frozen"),
        (2, "frozen"),
    ]
    for run in clock["runs"]:
        # Every lot closed exactly once, never early (how late is what the run measures).
        assert set(run["ended_events"]) == {"1"} and run["closed_early"] == 0, run
    targets = " ".join(v["target"] for v in results["verdicts"])
    assert "S2 10 watchers x 5/s" in targets and "S3 handshakes/s" in targets and "S3 idle CPU" in targets


def _queries(client, method: str, path: str, **kwargs) -> tuple[int, list[str]]:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as captured:
        response = getattr(client, method)(path, **kwargs)
    return response.status_code, [q["sql"] for q in captured.captured_queries]


@pytest.mark.services
@pytest.mark.django_db
def test_queries_per_request_of_the_benchmarked_paths(make_lot, make_user, client_for, api_client, capsys):
    """S4's list and S1's REST bid: how many queries each request makes (printed), and that lists do not grow with N."""
    lots = [make_lot(bid_increment="0.01") for _ in range(5)]
    status, few = _queries(api_client, "get", "/api/lots/?status=open")
    assert status == 200
    for _ in range(20):
        make_lot()
    status, many = _queries(api_client, "get", "/api/lots/?status=open")
    assert status == 200
    assert len(many) == len(few), many

    first, second = client_for(make_user()), client_for(make_user())
    status, opening = _queries(first, "post", f"/api/lots/{lots[0].id}/bids/", data={"amount": "10.00"}, format="json")
    assert status == 201
    status, bid = _queries(second, "post", f"/api/lots/{lots[0].id}/bids/", data={"amount": "10.01"}, format="json")
    assert status == 201
    with capsys.disabled():
        print(f"\nqueries: GET /api/lots/ {len(many)}, REST bid {len(bid)} (first bid {len(opening)})")
