"""The settings boot from the environment, with and without DATABASE_URL."""

import json

from tests.helpers import run_python

PRINT_DB = (
    "import django, json; django.setup(); from django.conf import settings; "
    "print(json.dumps({k: settings.DATABASES['default'].get(k) for k in ('ENGINE', 'NAME', 'HOST', 'PORT')}))"
)


def test_without_database_url_the_embedded_server_is_the_engine():
    result = run_python(PRINT_DB, env={"DATABASE_URL": None})
    assert result.returncode == 0, result.stderr
    db = json.loads(result.stdout)
    assert db["ENGINE"] == "config.embedded_postgres"
    assert db["NAME"] == "marketplace"


def test_database_url_selects_an_external_postgresql():
    result = run_python(PRINT_DB, env={"DATABASE_URL": "postgres://shop:secret@db.internal:6543/shop"})
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": "shop",
        "HOST": "db.internal",
        "PORT": 6543,
    }


def test_database_url_that_is_not_postgresql_is_refused_with_a_reason():
    result = run_python(PRINT_DB, env={"DATABASE_URL": "sqlite:///db.sqlite3"})
    assert result.returncode != 0
    assert "must point at PostgreSQL with the pgvector extension" in result.stderr


def test_external_database_url_really_connects(db):
    """DATABASE_URL is used for real: point it at the running embedded server's socket."""
    from django.db import connection

    host, name = connection.get_connection_params()["host"], connection.settings_dict["NAME"]
    code = (
        "import django; django.setup(); from django.db import connection; "
        "cur = connection.cursor(); cur.execute('SELECT current_database()'); print(cur.fetchone()[0])"
    )
    result = run_python(code, env={"DATABASE_URL": f"postgres://postgres@/{name}?host={host}"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == name


def test_debug_off_requires_a_secret_key():
    result = run_python(PRINT_DB, env={"DEBUG": "0", "SECRET_KEY": ""})
    assert result.returncode != 0
    assert "SECRET_KEY must be set when DEBUG is off" in result.stderr


def test_debug_off_still_serves_the_admin_and_its_static_files(tmp_path):
    env = {
        "DEBUG": "0",
        "SECRET_KEY": "test-secret",
        "STATIC_ROOT": str(tmp_path / "static"),
        "ALLOWED_HOSTS": "testserver",
    }
    code = (
        "import django; django.setup();"
        "from django.core.management import call_command;"
        "call_command('collectstatic', interactive=False, verbosity=0);"
        "from django.test import Client; c = Client();"
        "login = c.get('/admin/login/'); import re;"
        "css = re.search(r'href=\"(/static/admin/css/base\\.[0-9a-f]+\\.css)\"', login.content.decode()).group(1);"
        "r = c.get(css); print(login.status_code, r.status_code, r['Content-Type'])"
    )
    result = run_python(code, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["200", "200", "text/css;", 'charset="utf-8"']


def test_an_invalid_boolean_is_refused_with_the_variable_name():
    result = run_python(PRINT_DB, env={"DEBUG": "maybe"})
    assert result.returncode != 0
    assert "DEBUG='maybe' is not a boolean" in result.stderr


def test_the_demo_queue_logs_warnings_but_not_its_per_task_info_lines():
    code = (
        "import django; django.setup(); from django_q.conf import logger; "
        "logger.info('Enqueued [moderation] 1'); logger.warning('a worker died')"
    )
    result = run_python(code, env={"DATABASE_URL": None, "Q_LOG_LEVEL": None})
    assert result.returncode == 0, result.stderr
    assert "a worker died" in result.stderr
    assert "Enqueued" not in result.stderr


def test_a_replica_url_adds_the_search_database_and_a_cache_url_shares_the_cache():
    code = (
        "import django, json; django.setup(); from django.conf import settings; "
        "print(json.dumps([settings.DATABASES['replica']['HOST'], settings.DATABASES['replica']['TEST']['MIRROR'], "
        "settings.MODERATION['SEARCH_DATABASE'], settings.CACHES['default']['BACKEND']]))"
    )
    env = {
        "DATABASE_URL": "postgres://shop:secret@db.internal:6543/shop",
        "DATABASE_REPLICA_URL": "postgres://shop:secret@replica.internal:6543/shop",
        "CACHE_URL": "redis://cache.internal:6379/1",
    }
    result = run_python(code, env=env)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == [
        "replica.internal",
        "default",
        "replica",
        "django.core.cache.backends.redis.RedisCache",
    ]
