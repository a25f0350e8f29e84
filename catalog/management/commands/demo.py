"""`make demo`: set up the demo marketplace and run the web server and the task queue."""

import contextlib
import os
import signal
import subprocess
import sys

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand
from django.db import connections

from catalog.demo import load_demo_catalogue
from config import embedded_postgres


class Command(BaseCommand):
    help = "Migrate, create a demo admin and the sample catalogue, then run the web server and qcluster until Ctrl-C."

    def add_arguments(self, parser):
        parser.add_argument("--addr", default=os.environ.get("DEMO_ADDR", "127.0.0.1:8000"))
        parser.add_argument("--setup-only", action="store_true", help="Set up, but do not start the servers.")

    def handle(self, *args, addr, setup_only, **options):
        call_command("migrate", interactive=False, verbosity=0)
        username, password = "admin", os.environ.get("DEMO_ADMIN_PASSWORD", "demo-admin-pass")
        User = get_user_model()
        if not User.objects.filter(username=username).exists():
            User.objects.create_superuser(username, "admin@example.com", password)
        created = load_demo_catalogue()
        self.stdout.write(f"Sample catalogue ready ({created} listings created).")
        if setup_only:
            return
        self._run_servers(addr, username, password)

    def _run_servers(self, addr: str, username: str, password: str) -> None:
        manage = [sys.executable, str(settings.BASE_DIR / "manage.py")]
        children = [
            subprocess.Popen([*manage, "qcluster"]),
            subprocess.Popen([*manage, "runserver", addr, "--noreload"]),
        ]
        self.stdout.write(
            self.style.SUCCESS(
                f"\nThe demo is running.\n"
                f"  Admin:  http://{addr}/admin/   (user {username!r}, password {password!r})\n"
                f"  Press Ctrl-C to stop the web server, the task queue and the embedded database.\n"
            )
        )
        signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt))
        try:
            while all(child.poll() is None for child in children):
                with contextlib.suppress(subprocess.TimeoutExpired):
                    children[0].wait(timeout=1)
        except KeyboardInterrupt:
            pass
        finally:
            self._stop(children)

    def _stop(self, children: list[subprocess.Popen]) -> None:
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGINT)
        for child in children:
            try:
                child.wait(timeout=20)
            except subprocess.TimeoutExpired:
                child.kill()
        connections.close_all()
        if settings.DATABASES["default"]["ENGINE"] == "config.embedded_postgres":
            embedded_postgres.stop()
        self.stdout.write("Stopped.")
