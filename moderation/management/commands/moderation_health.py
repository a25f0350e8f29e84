"""moderation_health: the cluster's liveness check for a supervisor (exit 1 when wedged)."""

import json

from django.core.management.base import BaseCommand, CommandError

from moderation.health import cluster_report


class Command(BaseCommand):
    help = (
        "Print the task cluster's health (queue depth, oldest pending object, errors by code, "
        "seconds since the sweep last ran) as JSON; exit 1 when work waits and the sweep has not "
        "run for MODERATION['HEARTBEAT_MAX_AGE_SECONDS']: the cluster runs no task and needs a restart."
    )

    def handle(self, *args, **options):
        report = cluster_report()
        self.stdout.write(json.dumps(report))
        if not report["broker_reachable"]:
            raise CommandError(
                "The task broker does not answer (Q_CLUSTER: Redis or the ORM broker's database): "
                "saved objects wait, pending, until it is back and the sweeper queues them."
            )
        if report["wedged"]:
            last = report["heartbeat_seconds"]
            raise CommandError(
                "The task cluster runs no task: the sweep "
                + ("has never run" if last is None else f"last ran {last:.0f} s ago")
                + f" while {report['queue_depth']} task(s) wait in the broker and "
                + ("pending objects wait" if report["oldest_pending_seconds"] is not None else "no object is pending")
                + '. Restart the cluster (docs/production.md, "A wedged cluster").'
            )
