"""Which host models are moderated, and which of their fields hold text, photo, category, owner.

A host site declares its model once, without forking this app::

    from moderation.models import ModeratedModel
    from moderation.registry import register

    @register(text_fields=["title", "description"], image_field="image",
              category_field="category", owner_field="seller", created_field="created_at")
    class Listing(ModeratedModel):
        ...

``created_field`` names when an object was first saved: the earliest upload of a
picture is its original (``moderation.duplicates``). Without it the primary key's
order is taken, which is the order of creation for auto-increment keys only: a model
keyed by UUIDs names its creation timestamp.
"""

from __future__ import annotations

import hashlib
import re
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
    created_field: str | None = None
    category_description_field: str | None = None

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
            (role, getattr(self, role)) for role in ("image_field", "category_field", "owner_field", "created_field")
        ]
        for role, name in named:
            if name is None:
                continue
            try:
                self.model._meta.get_field(name)
            except FieldDoesNotExist:
                found.append(f"{self.model.__name__} has no field {name!r} (register(..., {role}=...)).")
        if self.category_description_field:
            try:
                category = self.model._meta.get_field(self.category_field) if self.category_field else None
            except FieldDoesNotExist:
                category = None
            if category is None or not category.is_relation:
                found.append(
                    f"{self.model.__name__}: category_description_field needs a category_field that is a foreign key."
                )
        return found

    def text_of(self, obj: models.Model) -> str:
        """The text that is embedded: the declared fields, non-empty, in order, without
        invisible characters (a zero-width space would change the vector, not what a
        reader sees)."""
        return self.text_from([getattr(obj, name) for name in self.text_fields])

    def text_from(self, values: Iterable) -> str:
        """``text_of`` over the values of ``text_fields`` as a query returns them."""
        parts = [strip_invisible(str(value or "")).strip() for value in values]
        return ". ".join(part for part in parts if part)

    def content_hash(self, obj: models.Model) -> str:
        """sha256 (64 hex) over the text fields as stored, the photo's bytes and the
        category (``category_field``'s stored value: a foreign key's key): what decides
        whether a save needs scoring. A listing moved to another category is scored again,
        so that the category check sees where it now stands.

        The embedding model is not part of it: a new model is ``moderation_reembed``'s
        work (rows keep ``embedding_model``), and a save that changes neither text, photo
        nor category must never reopen a moderator's decision, whatever the embedder is.
        """
        return self.content_hashes(obj)[0]

    def content_hashes(self, obj: models.Model, *, model_id: str | None = None) -> tuple[str, list[str]]:
        """(``content_hash``, the hashes earlier versions stored for the same content): the
        0.2-0.5 spelling, which left the category out, and with ``model_id`` the 0.1 one,
        which also covered the embedding model's id. ``signal_handlers.on_save`` reads them
        once per row, to store the new hash without taking an unchanged object for new
        content. The photo is read once for all of them."""
        digest = self._digest(obj)
        current = digest.copy()
        current.update(b"\x02" + self._category_key(obj).encode())
        without_category = digest.copy()
        without_category.update(b"\x01")
        earlier = [without_category.hexdigest()]
        if model_id:
            with_model = digest.copy()
            with_model.update(b"\x00" + model_id.encode())
            earlier.append(with_model.hexdigest())
        return current.hexdigest(), earlier

    def _category_key(self, obj: models.Model) -> str:
        if not self.category_field:
            return ""
        value = getattr(obj, self.model._meta.get_field(self.category_field).attname)
        return "" if value is None else str(value)

    def _digest(self, obj: models.Model):
        """sha256 of the text fields and the photo's bytes, open for a suffix (``content_hashes``).

        A photo whose file is gone from storage is hashed as its absence (its name): the
        save goes on, the object goes back to ``pending`` and its task records ``error``
        with ``image_missing``; the file's return is then new content."""
        digest = hashlib.sha256()
        for name in self.text_fields:
            digest.update(str(getattr(obj, name) or "").encode())
            digest.update(b"\x00")
        image = getattr(obj, self.image_field)
        if image:
            without_photo = digest.copy()
            try:
                image.open("rb")
                try:
                    image.seek(0)
                    for chunk in image.chunks():
                        digest.update(chunk)
                finally:
                    image.seek(0)
            except FileNotFoundError:
                digest = without_photo
                digest.update(b"\x03missing:" + image.name.encode())
        return digest

    @property
    def content_fields(self) -> set[str]:
        """The fields ``content_hash`` covers, by name and attname (``update_fields`` may
        name either)."""
        names = {*self.text_fields, self.image_field}
        if self.category_field:
            names |= {self.category_field, self.model._meta.get_field(self.category_field).attname}
        return names

    def category_of(self, obj: models.Model) -> str | None:
        if not self.category_field:
            return None
        value = getattr(obj, self.category_field)
        if value is None or value == "":
            return None
        display = getattr(obj, f"get_{self.category_field}_display", None)
        return str(display() if display else value)

    def upload_order(self, obj: models.Model) -> tuple:
        """What sorts objects by first upload: (``created_field``'s value, pk), or (pk,)."""
        if self.created_field:
            return (getattr(obj, self.created_field), obj.pk)
        return (obj.pk,)

    @property
    def owner_attname(self) -> str | None:
        """The owner field's column attribute (``seller_id`` for a foreign key ``seller``),
        None without ``owner_field``."""
        return self.model._meta.get_field(self.owner_field).attname if self.owner_field else None

    def owner_id_of(self, obj: models.Model):
        return getattr(obj, self.owner_attname) if self.owner_field else None

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

    def category_descriptions(self) -> dict[str, list[str]]:
        """{category label: the things it holds}, from ``category_description_field`` of
        the category model ("a sofa, a chair, a table": split on commas and lines);
        empty without that field. The category check prompts for each of them too."""
        if not self.category_description_field:
            return {}
        related = self.model._meta.get_field(self.category_field).related_model
        return {
            str(category): [part.strip() for part in re.split(r"[,\n]", description) if part.strip()]
            for category in related._default_manager.all()
            if (description := getattr(category, self.category_description_field))
        }


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
    created_field: str | None = None,
    category_description_field: str | None = None,
):
    """Declare a ``ModeratedModel`` subclass as moderated. Usable as a class decorator.

    ``category_description_field`` is a field of the model that ``category_field`` points
    to (a foreign key), holding what the category looks like (see ``category_descriptions``).
    A model that is no ``ModeratedModel``, or a field it does not have, is recorded for
    system check ``moderation.E007`` and the model is not registered."""

    def declare(model: type[models.Model]) -> type[models.Model]:
        spec = ModerationSpec(
            model,
            tuple(text_fields),
            image_field,
            category_field,
            owner_field,
            categories,
            created_field,
            category_description_field,
        )
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
