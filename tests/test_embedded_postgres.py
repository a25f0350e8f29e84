"""The embedded server is shared between processes, and stopped cleanly."""

import json
import os
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from config import embedded_postgres
from tests.helpers import ROOT

pytestmark = pytest.mark.slow


@pytest.fixture
def data_dir():
    # Outside root's home and outside pytest's tmp folder, which pgserver would make
    # world-readable when it runs as root.
    parent = Path(tempfile.mkdtemp(prefix="pgserver-test-", dir="/var/tmp"))
    path = parent / "pgdata"
    yield path
    embedded_postgres.stop(path)
    subprocess.run(["rm", "-rf", str(parent)], check=False)


def _start_in_subprocess(data_dir: Path) -> dict:
    code = (
        "import json, sys; from pathlib import Path; from config import embedded_postgres as e;"
        "p = e.ensure_running(Path(sys.argv[1]), database='shop');"
        "print(json.dumps({'pid': e.postmaster_pid(Path(sys.argv[1])), 'host': p['host']}))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, str(data_dir)], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_two_processes_asking_at_once_get_the_same_running_server(data_dir):
    with ThreadPoolExecutor(2) as pool:
        first, second = pool.map(_start_in_subprocess, [data_dir, data_dir])
    assert first["pid"] is not None
    assert first == second
    # Both processes have exited; the server outlives them for the next one.
    assert embedded_postgres.postmaster_pid(data_dir) == first["pid"]
    assert _start_in_subprocess(data_dir) == first


def test_stop_ends_the_server_and_a_later_start_brings_it_back_with_its_data(data_dir):
    first = _start_in_subprocess(data_dir)
    assert embedded_postgres.stop(data_dir) is True
    assert embedded_postgres.postmaster_pid(data_dir) is None
    assert embedded_postgres.stop(data_dir) is False
    again = _start_in_subprocess(data_dir)
    assert again["pid"] != first["pid"]


def test_a_test_run_drops_its_database_and_stops_the_server_it_started(data_dir):
    env = {**os.environ, "EMBEDDED_PG_DIR": str(data_dir)}
    env.pop("DATABASE_URL", None)
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "tests/test_database.py::test_migrations_create_the_vector_extension",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert embedded_postgres.postmaster_pid(data_dir) is None
    params = embedded_postgres.ensure_running(data_dir)
    import psycopg

    with psycopg.connect(dbname="postgres", **params) as conn:
        names = [row[0] for row in conn.execute("SELECT datname FROM pg_database")]
    assert "test_marketplace" not in names
