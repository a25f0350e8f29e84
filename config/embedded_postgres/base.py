"""Database ENGINE that starts the embedded PostgreSQL server on first connection.

It is Django's PostgreSQL backend; the only difference is that the socket folder
is looked up (and the server started) when a connection is opened, instead of
being written in settings. ``OPTIONS["data_dir"]`` names the server's data folder.
"""

from pathlib import Path

from django.db.backends.postgresql import base

from . import ensure_running


class DatabaseWrapper(base.DatabaseWrapper):
    def get_connection_params(self):
        options = dict(self.settings_dict.get("OPTIONS") or {})
        data_dir = options.pop("data_dir", None)
        settings_dict = {**self.settings_dict, "OPTIONS": options}
        # The database itself is created here too, so that `manage.py migrate` on a
        # fresh checkout needs no manual `createdb`. The test database is created by
        # Django's test runner through the "postgres" maintenance database.
        database = settings_dict["NAME"] if settings_dict["NAME"] != "postgres" else None
        server = ensure_running(Path(data_dir) if data_dir else None, database=database)
        settings_dict["HOST"] = server["host"]
        settings_dict["PORT"] = str(server["port"])
        settings_dict["USER"] = settings_dict.get("USER") or server["user"]
        original, self.settings_dict = self.settings_dict, settings_dict
        try:
            return super().get_connection_params()
        finally:
            self.settings_dict = original
