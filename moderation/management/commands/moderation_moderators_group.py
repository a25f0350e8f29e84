from django.apps import apps
from django.contrib.auth.models import Group, Permission
from django.contrib.contenttypes.models import ContentType
from django.core.management.base import BaseCommand

from moderation.models import MODERATE_PERMISSION, Decision
from moderation.registry import specs


def moderator_permissions() -> list[Permission]:
    """What a moderator needs in the admin: to view and change every moderated model and
    its proxies (a review queue is one), to view the decisions, and to moderate."""
    models = [
        model
        for spec in specs()
        for model in apps.get_models()
        if model is spec.model or (model._meta.proxy and model._meta.concrete_model is spec.model)
    ]
    wanted = [(model, action) for model in models for action in ("view", "change")] + [(Decision, "view")]
    permissions = [
        Permission.objects.get(
            content_type=ContentType.objects.get_for_model(model, for_concrete_model=False),
            codename=f"{action}_{model._meta.model_name}",
        )
        for model, action in wanted
    ]
    app_label, codename = MODERATE_PERMISSION.split(".")
    return [*permissions, Permission.objects.get(content_type__app_label=app_label, codename=codename)]


class Command(BaseCommand):
    help = (
        "Create or update a group of moderators with exactly what the review desk needs: view and change "
        "on each moderated model and its proxies (the review queue), view on the decisions, and "
        f"{MODERATE_PERMISSION}. Add moderators (staff users) to it."
    )

    def add_arguments(self, parser):
        parser.add_argument("--name", default="Moderators", help="The group's name (default: Moderators).")

    def handle(self, *args, name, **options):
        group, created = Group.objects.get_or_create(name=name)
        permissions = moderator_permissions()
        group.permissions.set(permissions)
        self.stdout.write(
            f"{'Created' if created else 'Updated'} the group {name!r} with {len(permissions)} permissions: "
            + ", ".join(sorted(f"{p.content_type.app_label}.{p.codename}" for p in permissions))
        )
