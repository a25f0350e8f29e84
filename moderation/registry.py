"""Which host models are moderated, and which of their fields hold text, photo, category, owner.

A host site declares its model once, without forking this app::

    from moderation.models import ModeratedModel
    from moderation.registry import register

    @register(text_fields=["title", "description"], image_field="image",
              category_field="category", owner_field="seller")
    class Listing(ModeratedModel):
        ...
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from django.core.exceptions import FieldDoesNotExist
from django.db import models

from .models import ModeratedModel
from .visible_text import strip_invisible


@dataclass(frozen=True)
class ModerationSpec:
    model: type[models.Model]
    text_fields: tuple[str, ...]
    image_field: str
    category_field: str | None = None
    owner_field: str | None = None
    categories: Callable[[], list[str]] | None = field(default=None, compare=False)

    @property
    def label(self) -> str:
        return self.model._meta.label_lower

    def problems(self) -> list[str]:
        """What makes this declaration unusable: the model is no ``ModeratedModel``, or a
        named field does not exist. Empty when it is fine."""
        found = []
        if not issubclass(self.model, ModeratedModel):
            found.append(f"{self.model.__name__} must inherit moderation.models.ModeratedModel to be moderated.")
        named = [("text_fields", name) for name in self.text_fields] + [
            (role, getattr(self, role)) for role in ("image_field", "category_field", "owner_field")
        ]
        for role, name in named:
            if name is None:
                continue
            try:
                self.model._meta.get_field(name)
            except FieldDoesNotExist:
                found.append(f"{self.model.__name__} has no field {name!r} (register(..., {role}=...)).")
        return found

    def text_of(self, obj: models.Model) -> str:
        """The text that is embedded: the declared fields, non-empty, in order, without
        invisible characters (a zero-width space would change the vector, not what a
        reader sees)."""
        parts = [strip_invisible(str(getattr(obj, name) or "")).strip() for name in self.text_fields]
        return ". ".join(part for part in parts if part)

    def content_hash(self, obj: models.Model, *, model_id: str) -> str:
        """sha256 (64 hex) over the text fields as stored, the photo's bytes and the
        embedding model's id: what decides whether a save needs scoring."""
        digest = hashlib.sha256()
        for name in self.text_fields:
            digest.update(str(getattr(obj, name) or "").encode())
            digest.update(b"\x00")
        image = getattr(obj, self.image_field)
        if image:
            image.open("rb")
            try:
                image.seek(0)
                for chunk in image.chunks():
                    digest.update(chunk)
            finally:
                image.seek(0)
        digest.update(b"\x00" + model_id.encode())
        return digest.hexdigest()

    def category_of(self, obj: models.Model) -> str | None:
        if not self.category_field:
            return None
        value = getattr(obj, self.category_field)
        if value is None or value == "":
            return None
        display = getattr(obj, f"get_{self.category_field}_display", None)
        return str(display() if display else value)

    def owner_id_of(self, obj: models.Model):
        if not self.owner_field:
            return None
        return getattr(obj, self.model._meta.get_field(self.owner_field).attname)

    def category_display(self, values) -> dict:
        """Stored category values (a foreign key's ids, a choice's values) -> their labels."""
        model_field = self.model._meta.get_field(self.category_field)
        if model_field.is_relation:
            return {pk: str(obj) for pk, obj in model_field.related_model._default_manager.in_bulk(values).items()}
        choices = dict(model_field.flatchoices) if model_field.choices else {}
        return {value: str(choices.get(value, value)) for value in values}

    def category_labels(self) -> list[str]:
        """Every category an object could be in: the candidates of the zero-shot check."""
        if self.categories is not None:
            return list(self.categories())
        if not self.category_field:
            return []
        model_field = self.model._meta.get_field(self.category_field)
        if model_field.is_relation:
            return [str(obj) for obj in model_field.related_model._default_manager.all()]
        if model_field.choices:
            return [str(label) for _value, label in model_field.flatchoices]
        values = self.model._default_manager.order_by().values_list(self.category_field, flat=True).distinct()
        return sorted(str(value) for value in values if value not in (None, ""))


_registry: dict[str, ModerationSpec] = {}
# Declarations that could not be registered: {model label: what is wrong with each}. A
# declaration runs when the host's models are imported, where an exception would stop
# every manage.py command with a traceback; system check moderation.E007 reports these
# instead, all at once, and the model is not moderated until they are fixed.
_refused: dict[str, tuple[type[models.Model], list[str]]] = {}


def register(
    model: type[models.Model] | None = None,
    *,
    text_fields: Iterable[str],
    image_field: str,
    category_field: str | None = None,
    owner_field: str | None = None,
    categories: Callable[[], list[str]] | None = None,
):
    """Declare a ``ModeratedModel`` subclass as moderated. Usable as a class decorator.

    A model that is no ``ModeratedModel``, or a field it does not have, is recorded for
    system check ``moderation.E007`` and the model is not registered."""

    def declare(model: type[models.Model]) -> type[models.Model]:
        spec = ModerationSpec(model, tuple(text_fields), image_field, category_field, owner_field, categories)
        problems = spec.problems()
        if problems:
            _refused[spec.label] = (model, problems)
            return model
        _refused.pop(spec.label, None)
        _registry[spec.label] = spec
        model.moderation_spec = spec
        return model

    return declare(model) if model is not None else declare


def refused() -> list[tuple[type[models.Model], list[str]]]:
    """(model, what is wrong) of each declaration ``register`` could not accept."""
    return list(_refused.values())


def _label(model) -> str:
    # A proxy (e.g. the admin's review queue) is moderated as its concrete model.
    return model._meta.concrete_model._meta.label_lower


def get_spec(model_or_label) -> ModerationSpec:
    label = model_or_label if isinstance(model_or_label, str) else _label(model_or_label)
    try:
        return _registry[label.lower()]
    except KeyError:
        raise LookupError(f"{label} is not registered with moderation.registry.register().") from None


def is_registered(model) -> bool:
    return _label(model) in _registry


def specs() -> list[ModerationSpec]:
    return list(_registry.values())
