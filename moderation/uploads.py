"""What an uploaded photo may be, and how it is stored: one rule for every entry point.

A photo reaches a moderated model through the API, the admin, a host's own forms or
plain code; all of them meet the model field, ``ModeratedImageField``:

- its validator, ``validate_photo``, is the pipeline's own decoder with the configured
  limits (``IMAGE_FORMATS``, ``IMAGE_MAX_BYTES``, ``IMAGE_MAX_PIXELS``, a full decode),
  so a photo that passes will not fail in the task for being unreadable. Django model
  forms (the admin's too) run it in ``full_clean``; DRF's ``ModelSerializer`` copies it;
  ``moderation.api.serializers.SafeImageField`` calls it.
- its file saving stores ``sanitised_photo``: the decoded picture re-encoded in its own
  format, under a name the app chooses with that format's extension. Nothing of the
  seller's file name, and no byte appended to the picture or hidden in its metadata,
  reaches storage, so no stored photo can be served as HTML. A photo that cannot be
  decoded is not stored at all: the save raises ``ValidationError`` before anything is
  written, even from code that skipped validation.

Identical pictures share one stored file (``store_photo``), and nothing is left behind:
a file that a save replaced, or whose row was deleted, is deleted once that transaction
commits, if no row of the model references it any more (``forget_photos``). A file a
save stores is checked again once its row is committed, and written again if such a
cleanup deleted it meanwhile (``keep_photo``); both hold the file's lock
(``lock_photo_file``), so no committed row is left without its file.

Photos stored before these rules: ``manage.py moderation_sanitize_images``
(``restore_photo``). See docs/pipeline.md, "Uploaded photos".
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
from pathlib import PurePosixPath

from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile
from django.db import connections, models, transaction
from django.db.models.fields.files import FieldFile, ImageFieldFile, ImageFileDescriptor
from django.db.models.signals import class_prepared, post_delete, post_save
from django.forms import FileField as FileFormField
from django.forms import ImageField as ImageFormField
from django.utils.crypto import salted_hmac
from PIL import Image, JpegImagePlugin

from .conf import moderation_settings
from .embedders import PermanentEmbedError, open_listing_image
from .embedders.images import check_size, upright
from .registry import ModerationSpec

# WebP is written again at quality 90, which costs no visible detail of a marketplace
# photo. JPEG keeps the seller's own quantization tables: the same size and about half
# a grey level of change (docs/benchmarks.md), where a fixed quality would double a
# low-quality photo's bytes. PNG and GIF are lossless.
WEBP_OPTIONS = {"quality": 90}
# What of a file's metadata is part of the picture and kept: its colours and its
# see-through pixels. EXIF (with the camera's GPS position), XMP and comments are not.
KEPT_INFO = ("icc_profile", "transparency")
EXTENSIONS = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp", "GIF": "gif"}


@contextlib.contextmanager
def refusing():
    """Raise the decoder's ``PermanentEmbedError`` as a ``ValidationError`` with its code."""
    try:
        yield
    except PermanentEmbedError as exc:
        raise ValidationError(str(exc), code=exc.code) from None


def read_photo(file) -> bytes:
    """The bytes of an upload or a stored file, its size checked before they are read.

    Raises ``ValidationError`` (``image_too_large``)."""
    with refusing():
        check_size(file.size, max_bytes=moderation_settings.IMAGE_MAX_BYTES)
    file.seek(0)
    try:
        return file.read()
    finally:
        file.seek(0)


def open_photo(data: bytes) -> Image.Image:
    """``data`` checked and decoded under the upload rules (``open_listing_image``).

    Raises ``ValidationError`` with the decoder's code (``image_format``,
    ``image_pixels``, ``image_truncated``, ``image_corrupt``, ...)."""
    with refusing():
        return open_listing_image(data)


def validate_photo(file) -> None:
    """Validator of a photo upload (an ``UploadedFile`` or an unsaved ``FieldFile``): the
    photo is decoded and encoded as it will be stored (``stored_photo``), so that what
    passes is what can be stored. Raises ``ValidationError`` with the decoder's code.

    A photo already in storage is not read again: it was checked when it was stored.
    """
    if getattr(file, "_committed", False):  # Django's own flag on a FieldFile
        return
    stored_photo(file)


def stored_photo(file) -> tuple[str, bytes]:
    """(file name, file bytes) to store for the upload ``file``: ``sanitised_photo``.

    Computed once per upload and kept on it (as Django's own ImageField form field keeps
    ``file.image``): the validator's work is what the model field's save then stores.
    Raises ``ValidationError`` with the decoder's code.
    """
    upload = file.file if isinstance(file, FieldFile) else file
    if not hasattr(upload, "moderation_stored"):
        upload.moderation_stored = sanitised_photo(open_photo(read_photo(upload)))
    return upload.moderation_stored


def photo_digest(data: bytes) -> str:
    """The name of a stored photo, without extension: a keyed hash of its bytes (32 hex).

    The same picture gets the same name, and only this app can make a name that matches
    a file's bytes (the key is ``SECRET_KEY``): ``is_sanitised`` relies on that.
    """
    return salted_hmac("moderation.uploads.photo", data, algorithm="sha256").hexdigest()[:32]


def sanitised_photo(image: Image.Image) -> tuple[str, bytes]:
    """The file to store for a photo decoded by ``open_photo``: (file name, file bytes).

    The picture is turned upright (EXIF orientation applied: every viewer then shows
    what was scored) and written again in its own format: the first frame, its mode,
    colour profile and transparency, nothing else. Raises ``ValidationError``
    (``image_too_large``) when that file would be over ``IMAGE_MAX_BYTES``, which the
    pipeline applies to stored files too.
    """
    fmt = image.format
    options = {key: image.info[key] for key in KEPT_INFO if key in image.info}
    if fmt == "JPEG":
        options.update(qtables=image.quantization, subsampling=JpegImagePlugin.get_sampling(image))
    elif fmt == "WEBP":
        options.update(WEBP_OPTIONS)
    image = upright(image)
    image.info = {}  # Pillow's writers copy some of it (comments, EXIF) unless it is gone
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    clean = buffer.getvalue()
    with refusing():
        check_size(len(clean), max_bytes=moderation_settings.IMAGE_MAX_BYTES)
    return f"{photo_digest(clean)}.{extension_of(fmt)}", clean


def extension_of(fmt: str) -> str:
    """The file extension of a Pillow format: ours for the default formats, else Pillow's first."""
    if fmt in EXTENSIONS:
        return EXTENSIONS[fmt]
    return next(ext for ext, name in Image.registered_extensions().items() if name == fmt).lstrip(".")


def photo_content_types() -> set[str]:
    """The content types of stored photos (``image/jpeg`` ...): all a media server should send."""
    return {Image.MIME[fmt.upper()] for fmt in moderation_settings.IMAGE_FORMATS if fmt.upper() in Image.MIME}


def is_sanitised(name: str, data: bytes) -> bool:
    """Whether the file ``name`` holding ``data`` was stored by ``sanitised_photo``.

    Storage may have added ``_<7 characters>`` to a name already taken; the digest still leads."""
    return PurePosixPath(name).stem.startswith(photo_digest(data))


def store_photo(field: models.FileField, instance: models.Model, name: str, data: bytes) -> str:
    """Store ``data`` as ``instance``'s photo in ``field`` under ``name`` (the app's, which
    ``upload_to`` places) and return the stored name.

    A file already stored under that name with the same bytes is the same picture (the
    name is their keyed hash): its name is returned and nothing is written, so identical
    uploads share one file instead of a copy under ``<digest>_<7 characters>``.
    """
    name = field.generate_filename(instance, name)
    storage = field.storage
    try:
        if storage.exists(name) and storage.size(name) == len(data):
            with storage.open(name, "rb") as stored:
                if stored.read() == data:
                    return name
    except FileNotFoundError:
        pass  # deleted meanwhile by the cleanup of the last row that referenced it: written anew
    return storage.save(name, ContentFile(data), max_length=field.max_length)


def photo_lock_key(field: models.FileField, name: str) -> int:
    """The advisory lock key (a signed 64-bit integer) of the stored file ``name`` of
    ``field``: blake2b over the model, the field and the name, the same in every process."""
    label = f"{field.model._meta.label_lower}.{field.name}:{name}"
    return int.from_bytes(hashlib.blake2b(label.encode(), digest_size=8).digest(), "big", signed=True)


def lock_photo_file(field: models.FileField, name: str, *, using: str) -> None:
    """Inside a transaction on ``using``: wait for, then hold until it ends, the lock of
    the stored file ``name`` (``pg_advisory_xact_lock``, single bigint keys, apart from
    the two-integer keys of ``moderation.claims``). ``forget_photos`` holds it from its
    reference check to its deletion, ``keep_photo`` from its check to its writing."""
    with connections[using].cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [photo_lock_key(field, name)])


def keep_photo(field: models.FileField, name: str, data: bytes, *, using: str) -> None:
    """Make sure the stored file ``name``, which a committed row of ``field`` on ``using``
    references, is in storage: written again with ``data`` if it is gone. Run once the row
    is committed (``transaction.on_commit``, robust: a storage error is logged, the row
    is committed already).

    ``store_photo`` may return a shared file that the cleanup of another row deletes
    before this row commits: that cleanup's reference check cannot see an uncommitted
    row. Under the file's lock, a cleanup that checked before this commit has finished
    deleting, and one that checks after sees the row."""
    with transaction.atomic(using=using):
        lock_photo_file(field, name, using=using)
        if not field.storage.exists(name):
            stored = field.storage.save(name, ContentFile(data), max_length=field.max_length)
            if stored != name:  # the same picture was stored under the name meanwhile
                field.storage.delete(stored)


def forget_photos(model: type[models.Model], field: models.FileField, names: set[str], *, using: str) -> None:
    """Once the current transaction on ``using`` commits (at once outside one), delete the
    stored files ``names`` that no row of ``model`` references in ``field`` any more.

    Identical pictures share a file, so a file goes with its last row. Each name is
    checked and deleted under its lock (``lock_photo_file``), in a transaction of its
    own: one lock held at a time, so no two of these deadlock, and a save of the same
    picture that commits meanwhile stores it again (``keep_photo``). A rolled back
    transaction deletes nothing. A storage error is logged, not raised: the row's
    change is committed already (``robust``)."""

    def delete_unreferenced():
        rows = model._base_manager.using(using)
        for name in sorted(names):
            with transaction.atomic(using=using):
                lock_photo_file(field, name, using=using)
                if not rows.filter(**{field.attname: name}).exists():
                    field.storage.delete(name)

    if names:
        transaction.on_commit(delete_unreferenced, using=using, robust=True)


# Where an instance keeps the stored names that a new value of its photo fields replaced
# ({attname: {name, ...}}), until a save writes the new value.
REPLACED_PHOTOS = "_moderation_replaced_photos"


class SavedPhoto(ContentFile):
    """The bytes a save stored, read from memory until the row is committed: the content
    hash of ``post_save`` does not read back a file that a cleanup may delete before the
    row commits, and ``keep_photo`` has them to write again. Forgotten once the row is
    committed (``keep``), so that instances do not keep photos' bytes."""

    # Whether the save that stored these bytes has handed them to ``keep`` on commit: a
    # later save of the same instance in that transaction (a price change) does not again.
    handed_over = False

    def keep(self, field_file: FieldFile, *, using: str) -> None:
        """Once the row is committed: ``keep_photo``, then ``field_file`` is read from
        storage again (unless it holds another file by now)."""
        try:
            keep_photo(field_file.field, field_file.name, self.file.getvalue(), using=using)
        finally:
            if getattr(field_file, "_file", None) is self:
                field_file.file = None


class ModeratedFieldFile(ImageFieldFile):
    """A photo whose saving stores the sanitised picture under the app's name."""

    def save(self, name, content, save=True):
        """Store ``content`` sanitised (``store_photo``); ``name`` (the seller's) is not
        used. Raises ``ValidationError`` before anything is written."""
        clean_name, clean = stored_photo(content)
        # Django's FieldFile.save, with store_photo in place of storage.save, and this
        # field file (its bytes at hand) in place of the bare name.
        self.name = store_photo(self.field, self.instance, clean_name, clean)
        self.file = SavedPhoto(clean, name=self.name)
        self._committed = True
        setattr(self.instance, self.field.attname, self)
        if save:
            self.instance.save()

    save.alters_data = True


class ModeratedFileDescriptor(ImageFileDescriptor):
    """Django's descriptor, noting the stored file that a new value replaces (an upload,
    another name, or none): ``forget_replaced_photos`` forgets it when the save commits."""

    def __set__(self, instance, value):
        previous = instance.__dict__.get(self.field.attname)
        super().__set__(instance, value)
        if isinstance(previous, FieldFile):
            previous = previous.name if previous._committed else None
        if previous and previous != getattr(value, "name", value):
            instance.__dict__.setdefault(REPLACED_PHOTOS, {}).setdefault(self.field.attname, set()).add(previous)


def photo_fields(model: type[models.Model]) -> list[ModeratedImageField]:
    """The ``ModeratedImageField``s of ``model`` (its concrete model's, for a proxy)."""
    return [field for field in model._meta.concrete_fields if isinstance(field, ModeratedImageField)]


def forget_replaced_photos(sender, instance, using, update_fields=None, **kwargs) -> None:
    """``post_save``: the files the saved values replaced are forgotten on commit."""
    replaced = instance.__dict__.get(REPLACED_PHOTOS, {})
    for field in photo_fields(sender):
        if update_fields is None or field.name in update_fields:
            forget_photos(sender._meta.concrete_model, field, replaced.pop(field.attname, set()), using=using)


def keep_saved_photos(sender, instance, using, update_fields=None, **kwargs) -> None:
    """``post_save``: the files this save stored are kept in storage once the row is
    committed (``SavedPhoto.keep``)."""
    for field in photo_fields(sender):
        field_file = instance.__dict__.get(field.attname)
        saved = getattr(field_file, "_file", None)
        if isinstance(saved, SavedPhoto) and not saved.handed_over:
            if update_fields is not None and field.name not in update_fields:
                continue
            saved.handed_over = True
            transaction.on_commit(functools.partial(saved.keep, field_file, using=using), using=using, robust=True)


def forget_deleted_photos(sender, instance, using, **kwargs) -> None:
    """``post_delete``: the deleted row's files (and any it replaced unsaved) are forgotten on commit."""
    replaced = instance.__dict__.pop(REPLACED_PHOTOS, {})
    for field in photo_fields(sender):
        current = instance.__dict__.get(field.attname)  # absent if deferred: the row is gone
        names = replaced.get(field.attname, set()) | {getattr(current, "name", current)}
        forget_photos(sender._meta.concrete_model, field, {name for name in names if name}, using=using)


def connect_photo_cleanup(sender, **kwargs) -> None:
    """``class_prepared``: a model with a ``ModeratedImageField`` (its proxies too, which
    send their own signals) keeps the files its saves store and forgets the files its
    saves replace and its deletes leave. Connected per model, never for all: a
    ``post_delete`` receiver for every model would cost every other model Django's fast
    deletes."""
    if photo_fields(sender):
        post_save.connect(forget_replaced_photos, sender=sender, dispatch_uid="moderation.uploads.replaced")
        post_save.connect(keep_saved_photos, sender=sender, dispatch_uid="moderation.uploads.kept")
        post_delete.connect(forget_deleted_photos, sender=sender, dispatch_uid="moderation.uploads.deleted")


class_prepared.connect(connect_photo_cleanup, dispatch_uid="moderation.uploads.cleanup")


class PhotoFormField(ImageFormField):
    """The form field of a ``ModeratedImageField``: the picture is checked by
    ``validate_photo``, so a form says why a photo is refused as the API does (Django's
    own check answers every refusal with its generic "Upload a valid image."). The
    seller's file extension is not checked, since it is never used."""

    default_validators = []

    def to_python(self, data):
        """The upload (or None), checked by ``validate_photo``; raises its ``ValidationError``."""
        upload = FileFormField.to_python(self, data)  # Django's ImageField would open it with Pillow
        if upload is not None:
            validate_photo(upload)
        return upload


class ModeratedImageField(models.ImageField):
    """An ``ImageField`` that applies the upload rules: ``validate_photo`` on every form
    and serializer built on it, and ``sanitised_photo`` on every file it stores.

    ``upload_to`` still picks the folder; its callable is given the app's file name,
    and should keep it (the extension says what the file is).
    """

    attr_class = ModeratedFieldFile
    descriptor_class = ModeratedFileDescriptor
    default_validators = [validate_photo]

    def formfield(self, **kwargs):
        return super().formfield(**{"form_class": PhotoFormField, **kwargs})


def restore_photo(spec: ModerationSpec, obj: models.Model, *, dry_run: bool = False) -> str:
    """Store ``obj``'s photo again through ``sanitised_photo`` (a file from before the rules).

    Returns the outcome: ``"restored"`` (or, with ``dry_run``, what would be),
    ``"safe"`` (stored by the rules already), ``"missing"`` (no photo, or its file is
    gone) or ``"changed"`` (the seller saved a new photo meanwhile). Raises
    ``ValidationError`` for a file the rules refuse; it is left where it is.

    The new file is saved and the row points at it before the old file is deleted.
    The moderation state stays: it is the same picture, so ``spec.content_hash`` is
    recomputed over it and a later save is not taken for a new photo.
    """
    field_file = getattr(obj, spec.image_field)
    if not field_file:
        return "missing"
    old_name = field_file.name
    try:
        with field_file.open("rb"):
            data = read_photo(field_file)
    except FileNotFoundError:
        return "missing"
    if is_sanitised(old_name, data):
        return "safe"
    name, clean = sanitised_photo(open_photo(data))
    if dry_run:
        return "restored"
    field = obj._meta.get_field(spec.image_field)
    new_name = store_photo(field, obj, name, clean)
    setattr(obj, field.attname, new_name)
    new_hash = spec.content_hash(obj)
    # Only if the row still holds the old file: a seller's new photo wins.
    updated = (
        type(obj)
        ._default_manager.filter(pk=obj.pk, **{field.attname: old_name})
        .update(**{field.attname: new_name, "content_hash": new_hash})
    )
    obj.__dict__.pop(REPLACED_PHOTOS, None)  # forgotten and kept here: the update sends no signal
    if updated:
        keep = functools.partial(keep_photo, field, new_name, clean, using=obj._state.db)
        transaction.on_commit(keep, using=obj._state.db, robust=True)
    forget_photos(type(obj), field, {old_name} if updated else {new_name}, using=obj._state.db)
    return "restored" if updated else "changed"
