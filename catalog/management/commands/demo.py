"""`make demo`: set up the demo marketplace and run the web server and the task queue."""

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections import Counter

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand
from django.db import connections
from django.db.models import F, Q

from catalog.demo import draw_labelled_set, load_demo_catalogue
from catalog.models import Listing
from config import embedded_postgres
from moderation.embedders.demo_model import build_colour_words_model
from moderation.models import FlagReason, ModerationStatus


class Command(BaseCommand):
    # Checks run after the demo model is built, in `migrate`.
    requires_system_checks = []
    help = "Migrate, create a demo admin and the sample catalogue, then run the web server and qcluster until Ctrl-C."

    def add_arguments(self, parser):
        parser.add_argument("--addr", default=os.environ.get("DEMO_ADDR", "127.0.0.1:8000"))
        parser.add_argument("--setup-only", action="store_true", help="Set up, but do not start the servers.")

    def handle(self, *args, addr, setup_only, **options):
        if not (settings.DEMO_MODEL_DIR / "config.json").exists():
            build_colour_words_model(settings.DEMO_MODEL_DIR)
            self.stdout.write(f"Built the colour-words demo model in {settings.DEMO_MODEL_DIR}.")
        call_command("migrate", interactive=False, verbosity=0)
        username, password = "admin", os.environ.get("DEMO_ADMIN_PASSWORD", "demo-admin-pass")
        seller_password = os.environ.get("DEMO_SELLER_PASSWORD", "demo-seller-pass")
        User = get_user_model()
        if not User.objects.filter(username=username).exists():
            User.objects.create_superuser(username, "admin@example.com", password)
        manage = [sys.executable, str(settings.BASE_DIR / "manage.py")]
        # The cluster first: the catalogue's listings are queued as they are saved,
        # and scored by the real pipeline, as a seller's would be.
        children = [] if setup_only else [subprocess.Popen([*manage, "qcluster"])]
        signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt))
        try:
            created = load_demo_catalogue(seller_password=seller_password)
            made = f"{created} listing created" if created == 1 else f"{created} listings created"
            self.stdout.write(f"Sample catalogue ready ({made}).")
            self.stdout.write(
                f"  Admin user {username!r}, password {password!r}; sellers alice, bob, carol and dave, "
                f"password {seller_password!r} (POST /api/token/ gives an app a token)."
            )
            if setup_only:
                return
            self._report_when_scored()
            self._evaluate()
            children.append(subprocess.Popen([*manage, "runserver", addr, "--noreload"]))
            self._serve(children, addr, username, password)
        except KeyboardInterrupt:
            pass
        finally:
            if children:
                self._stop(children)

    def _report_when_scored(self, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        # Pending, or scored and queued again since: a copy scored before its original
        # is rescanned once the original is written (moderation.duplicates.later_copies).
        waiting = Q(moderation_status=ModerationStatus.PENDING) | Q(moderation_queued_at__gt=F("moderated_at"))
        while Listing.objects.filter(waiting).exists():
            if time.monotonic() > deadline:
                self.stdout.write(self.style.WARNING("Some listings are still pending; the queue keeps working."))
                break
            time.sleep(0.5)
        counts = Counter(Listing.objects.values_list("moderation_status", flat=True))
        # The reasons of what waits for a moderator: a listing decided since keeps its reasons.
        flagged = Listing.objects.filter(moderation_status=ModerationStatus.FLAGGED)
        reasons = Counter(reason for row in flagged.values_list("flag_reasons", flat=True) for reason in row)
        self.stdout.write(
            f"Moderation: {sum(counts.values())} listings; "
            + ", ".join(f"{count} {status}" for status, count in sorted(counts.items()))
        )
        for reason, count in reasons.most_common():
            self.stdout.write(f"  flagged {count} x {FlagReason(reason).label.lower()} ({reason})")

    def _evaluate(self) -> None:
        """Run the evaluation once on the shipped labelled set, so a newcomer sees it."""
        folder = settings.BASE_DIR / "var" / "evaluation"
        self.stdout.write("\nThe evaluation on the demo's labelled set (manage.py moderation_evaluate):")
        call_command(
            "moderation_evaluate",
            labelled=draw_labelled_set(folder / "labelled"),
            output_dir=folder,
            stdout=self.stdout,
        )

    def _serve(self, children: list[subprocess.Popen], addr: str, username: str, password: str) -> None:
        self.stdout.write(
            self.style.SUCCESS(
                f"\nThe demo is running.\n"
                f"  Admin:         http://{addr}/admin/   (user {username!r}, password {password!r})\n"
                f"  Review queue:  http://{addr}/admin/catalog/listingreview/\n"
                f"  Dashboard:     http://{addr}/admin/moderation/decision/dashboard/\n"
                f"  API docs:      http://{addr}/api/docs/\n"
                f"  Search:        http://{addr}/api/search/text/?q=red\n"
                f"  Press Ctrl-C to stop the web server, the task queue and the embedded database.\n"
            )
        )
        while all(child.poll() is None for child in children):
            with contextlib.suppress(subprocess.TimeoutExpired):
                children[0].wait(timeout=1)

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
