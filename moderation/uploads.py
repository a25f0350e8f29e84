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

Photos stored before these rules: ``manage.py moderation_sanitize_images``
(``restore_photo``). See docs/pipeline.md, "Uploaded photos".
"""

from __future__ import annotations

import contextlib
import io
from pathlib import PurePosixPath

from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile
from django.db import models
from django.db.models.fields.files import FieldFile, ImageFieldFile
from django.forms import FileField as FileFormField
from django.forms import ImageField as ImageFormField
from django.utils.crypto import salted_hmac
from PIL import Image, JpegImagePlugin

from .conf import moderation_settings
from .embedders import PermanentEmbedError, current_model_id, open_listing_image
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


class ModeratedFieldFile(ImageFieldFile):
    """A photo whose saving stores the sanitised picture under the app's name."""

    def save(self, name, content, save=True):
        """Store ``content`` sanitised; ``name`` (the seller's) is not used.
        Raises ``ValidationError`` before anything is written."""
        clean_name, clean = stored_photo(content)
        super().save(clean_name, ContentFile(clean), save)

    save.alters_data = True


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
    old_name, storage = field_file.name, field_file.storage
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
    new_name = storage.save(field.generate_filename(obj, name), ContentFile(clean), max_length=field.max_length)
    setattr(obj, field.attname, new_name)
    new_hash = spec.content_hash(obj, model_id=current_model_id())
    # Only if the row still holds the old file: a seller's new photo wins.
    updated = (
        type(obj)
        ._default_manager.filter(pk=obj.pk, **{field.attname: old_name})
        .update(**{field.attname: new_name, "content_hash": new_hash})
    )
    if not updated:
        storage.delete(new_name)
        return "changed"
    storage.delete(old_name)
    return "restored"
