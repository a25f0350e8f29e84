"""The upload rules: every entry point (the API, the admin, a host's own form, the ORM)
refuses what the pipeline cannot decode, leaves nothing of it behind, and stores only
the picture under a name and extension the app chooses."""

import io
import struct
import threading
import zlib
from pathlib import PurePosixPath

import numpy as np
import pytest
from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.db import connection, transaction
from django.forms import modelform_factory
from PIL import Image
from PIL.PngImagePlugin import PngInfo
from rest_framework import serializers
from rest_framework.test import APIClient

from catalog.models import Category, Listing
from moderation import uploads
from moderation.models import Decision, ModerationStatus
from moderation.registry import get_spec
from moderation.uploads import is_sanitised, open_photo, sanitised_photo
from tests.helpers import decode_image, image_bytes, score_now
from tests.testapp.models import Gadget

pytestmark = pytest.mark.django_db
S = ModerationStatus
SCRIPT = b"<html><script>alert(document.cookie)</script></html>"


def encode(image: Image.Image, fmt: str, **params) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **params)
    return buffer.getvalue()


def stored_for(data: bytes) -> tuple[str, bytes]:
    """The file name and bytes the upload rules store for ``data``."""
    return sanitised_photo(open_photo(data))


def polyglot(fmt: str = "JPEG") -> bytes:
    """A valid photo with HTML appended, and more of it in its metadata where the format has any."""
    text = PngInfo()
    text.add_text("Comment", SCRIPT)
    params = {
        "JPEG": {"comment": SCRIPT},
        "PNG": {"pnginfo": text},
        "GIF": {"comment": SCRIPT},
        "WEBP": {"exif": b"Exif\x00\x00" + SCRIPT},
    }
    return encode(Image.new("RGB", (64, 64), (200, 30, 30)), fmt, **params.get(fmt, {})) + SCRIPT


def half_of(fmt: str) -> bytes:
    data = encode(Image.effect_noise((256, 256), 60).convert("RGB"), fmt)
    return data[: len(data) // 2]


def stored_files(media_root) -> list:
    return [path for path in media_root.rglob("*") if path.is_file()] if media_root.exists() else []


@pytest.fixture
def seller_api(user_factory, category_factory, media_root, demo_moderation):
    category_factory("Kitchen")
    api = APIClient()
    api.force_authenticate(user_factory(username="mallory"))
    return api


def create_listing(api, name: str, data: bytes):
    form = {"title": "Red mug", "category": "kitchen", "price": "8", "image": SimpleUploadedFile(name, data)}
    return api.post("/api/listings/", form, format="multipart")


# -- Fault 1: a stored upload's name, extension and bytes came from the seller --------


@pytest.mark.parametrize("name", ["x.html", "x.htm", "x.xhtml", "x.svg", "x"])
def test_a_polyglot_upload_is_stored_as_the_image_alone_under_a_name_the_app_chooses(seller_api, media_root, name):
    response = create_listing(seller_api, name, polyglot())
    assert response.status_code == 201, response.content
    stored = Listing.objects.get().image.name
    assert stored.startswith(f"listings/{Listing.objects.get().seller_id}/")
    assert stored.endswith(".jpg")
    assert "x" not in PurePosixPath(stored).name  # nothing of the seller's name
    data = (media_root / stored).read_bytes()
    assert b"<script" not in data
    assert Image.open(io.BytesIO(data)).format == "JPEG"


def test_a_stored_photo_is_served_as_its_image_type_with_nosniff(seller_api, client):
    body = create_listing(seller_api, "x.html", polyglot()).json()
    response = client.get(body["image"].removeprefix("http://testserver"))
    assert response.status_code == 200
    assert response["Content-Type"] == "image/jpeg"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert b"<script" not in b"".join(response.streaming_content)


def test_a_file_stored_under_a_type_that_is_not_an_image_is_not_served(media_root, client):
    default_storage.save("listings/1/x.html", ContentFile(polyglot()))
    assert client.get("/media/listings/1/x.html").status_code == 404


@pytest.mark.parametrize(("fmt", "extension"), [("JPEG", "jpg"), ("PNG", "png"), ("WEBP", "webp"), ("GIF", "gif")])
def test_the_stored_file_has_the_extension_of_its_decoded_format_and_nothing_appended(fmt, extension):
    name, data = stored_for(polyglot(fmt))
    assert name.endswith(f".{extension}")
    assert b"script" not in data
    assert Image.open(io.BytesIO(data)).format == fmt


def test_the_stored_photo_is_upright_and_keeps_no_exif():
    image = Image.new("RGB", (40, 20), (0, 0, 255))
    image.paste((255, 0, 0), (0, 0, 20, 20))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    exif[0x8825] = {1: "N", 2: (52.0, 22.0, 0.0)}  # where the seller lives
    _name, data = stored_for(encode(image, "JPEG", exif=exif.tobytes()))
    stored = Image.open(io.BytesIO(data))
    assert stored.size == (20, 40)
    assert stored.getpixel((10, 5))[0] > 200
    assert not stored.getexif()


def test_transparency_and_sixteen_bits_are_kept_in_a_stored_png():
    clear = Image.new("RGBA", (8, 8), (255, 0, 0, 0))
    assert Image.open(io.BytesIO(stored_for(encode(clear, "PNG"))[1])).getpixel((4, 4)) == (255, 0, 0, 0)
    deep = Image.new("I;16", (8, 8), 40000)
    assert Image.open(io.BytesIO(stored_for(encode(deep, "PNG"))[1])).getpixel((4, 4)) == 40000


def sixteen_bit_rgb_png(array: np.ndarray) -> bytes:
    """A PNG of 16 bits per RGB sample (``array``: height x width x 3, uint16), which
    Pillow reads but cannot write."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    height, width, _ = array.shape
    rows = b"".join(b"\x00" + row.astype(">u2").tobytes() for row in array)  # filter 0 per row
    header = struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0)  # 16 bits, truecolour
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def test_a_sixteen_bit_rgb_png_is_stored_and_decoded_with_its_high_bytes():
    tones = np.zeros((8, 8, 3), dtype=np.uint16)
    tones[...] = (0x1234, 0xABCD, 0x00FF)
    tones[4:, :] = (0xFFFF, 0x8001, 0x7FFF)
    _name, data = stored_for(sixteen_bit_rgb_png(tones))
    stored = Image.open(io.BytesIO(data))
    assert (stored.mode, data[24]) == ("RGB", 8)  # IHDR's bit depth: Pillow has no 16-bit RGB mode
    high_bytes = (tones >> 8).astype(np.uint8)
    assert np.array_equal(np.asarray(stored), high_bytes)
    assert np.array_equal(np.asarray(decode_image(data)), high_bytes)
    assert np.array_equal(np.asarray(decode_image(sixteen_bit_rgb_png(tones))), high_bytes)


def test_an_animated_gif_is_stored_as_the_frame_that_was_scored():
    frames = [Image.new("RGB", (16, 16), colour) for colour in [(255, 0, 0), (0, 0, 255)]]
    _name, data = stored_for(encode(frames[0], "GIF", save_all=True, append_images=frames[1:]))
    assert getattr(Image.open(io.BytesIO(data)), "n_frames", 1) == 1


def test_a_stored_jpeg_keeps_the_sellers_quality():
    noisy = Image.effect_noise((320, 240), 40).convert("RGB")
    for quality in (50, 95):
        data = encode(noisy, "JPEG", quality=quality)
        assert len(stored_for(data)[1]) == pytest.approx(len(data), rel=0.05)


def test_a_photo_that_would_be_stored_over_the_byte_cap_is_refused_by_the_form(settings, demo_moderation, media_root):
    data = encode(Image.effect_noise((320, 240), 40).convert("RGB"), "WEBP", quality=5)
    settings.MODERATION = {**demo_moderation, "IMAGE_MAX_BYTES": len(data)}  # stored at quality 90 it grows
    form = modelform_factory(Gadget, fields=["name", "kind", "picture"])(
        {"name": "Red lamp", "kind": "red"}, {"picture": SimpleUploadedFile("lamp.webp", data)}
    )
    assert not form.is_valid()
    assert form.errors.as_data()["picture"][0].code == "image_too_large"
    assert stored_files(media_root) == []


def test_the_same_picture_is_stored_under_the_same_name():
    assert stored_for(polyglot())[0] == stored_for(polyglot())[0]
    assert stored_for(polyglot())[0] == stored_for(image_bytes(fmt="JPEG"))[0]  # the same picture, without HTML
    assert stored_for(polyglot())[0] != stored_for(image_bytes((20, 30, 200), fmt="JPEG"))[0]


# -- Fault 2: two entry points, two validators ----------------------------------------


def refused_uploads() -> dict:
    return {
        "tiff": image_bytes(fmt="TIFF"),
        "bmp": image_bytes(fmt="BMP"),
        "eps": image_bytes(fmt="EPS"),
        "48-megapixel-png": encode(Image.new("1", (8000, 6000)), "PNG"),
        "50-megabyte-file": image_bytes() + bytes(50 * 1024 * 1024),
        "not-an-image": b"<html>not a photo</html>",
        **{f"half-a-{fmt.lower()}": half_of(fmt) for fmt in ("JPEG", "PNG", "WEBP", "GIF")},
    }


REFUSED = refused_uploads()


@pytest.fixture
def admin_form(admin_client, category_factory, media_root):
    kitchen = category_factory("Kitchen")

    def post(upload: bytes, *, url="/admin/catalog/listing/add/"):
        form = {
            "seller": admin_client.session["_auth_user_id"],
            "title": "Red mug",
            "description": "",
            "category": kitchen.pk,
            "price": "8",
            "image": SimpleUploadedFile("photo.png", upload),
        }
        return admin_client.post(url, form)

    return post


@pytest.mark.parametrize("upload", REFUSED.values(), ids=REFUSED.keys())
def test_the_admin_refuses_what_the_pipeline_cannot_decode_and_stores_nothing(admin_form, media_root, upload):
    response = admin_form(upload)
    assert response.status_code == 200  # the form again, with the error
    assert response.context["adminform"].form.errors["image"]
    assert not Listing.objects.exists()
    assert stored_files(media_root) == []


SVG = b'<svg xmlns="http://www.w3.org/2000/svg" width="8" height="8"><script>alert(1)</script></svg>'
# What the admin answered with Django's generic "Upload a valid image. The file you
# uploaded was either not an image or a corrupted image." where the API said why.
ADMIN_REFUSALS = {
    "half-a-webp": REFUSED["half-a-webp"],
    "half-a-png": REFUSED["half-a-png"],
    "html-renamed-jpg": SCRIPT,
    "svg": SVG,
    "20000x20000-png": encode(Image.new("1", (20000, 20000)), "PNG"),
}


@pytest.mark.parametrize("upload", ADMIN_REFUSALS.values(), ids=ADMIN_REFUSALS.keys())
def test_the_admin_gives_the_same_reason_for_a_refused_photo_as_the_api(admin_form, seller_api, media_root, upload):
    api_message = create_listing(seller_api, "photo.jpg", upload).json()["error"]["fields"]["image"]
    admin_message = admin_form(upload).context["adminform"].form.errors["image"]
    assert admin_message == api_message
    assert "Upload a valid image" not in admin_message[0]
    assert stored_files(media_root) == []


def test_the_admin_change_form_refuses_a_new_photo_and_keeps_the_old_one(
    admin_form, media_root, demo_moderation, listing_factory, photo
):
    listing = listing_factory(image=photo("red", "cup"))
    before = stored_files(media_root)
    response = admin_form(REFUSED["tiff"], url=f"/admin/catalog/listing/{listing.pk}/change/")
    assert response.status_code == 200
    assert response.context["adminform"].form.errors["image"]
    listing.refresh_from_db()
    assert stored_files(media_root) == before == [media_root / listing.image.name]


def test_the_admin_stores_an_accepted_photo_under_the_apps_name(admin_form, media_root):
    response = admin_form(polyglot())
    assert response.status_code == 302
    assert [path.suffix for path in stored_files(media_root)] == [".jpg"]
    assert b"<script" not in stored_files(media_root)[0].read_bytes()


@pytest.mark.parametrize("upload", [REFUSED["bmp"], REFUSED["half-a-webp"]], ids=["bmp", "half-a-webp"])
def test_a_hosts_own_model_form_gets_the_same_rules(media_root, upload):
    form_class = modelform_factory(Gadget, fields=["name", "kind", "picture"])
    form = form_class({"name": "Red lamp", "kind": "red"}, {"picture": SimpleUploadedFile("lamp.jpg", upload)})
    assert not form.is_valid()
    assert "picture" in form.errors
    assert stored_files(media_root) == []


@pytest.mark.parametrize("upload", [REFUSED["bmp"], REFUSED["48-megapixel-png"]], ids=["bmp", "48-megapixel-png"])
def test_a_hosts_own_model_serializer_gets_the_same_rules(media_root, upload):
    class GadgetSerializer(serializers.ModelSerializer):
        class Meta:
            model = Gadget
            fields = ["name", "kind", "picture"]

    serializer = GadgetSerializer(
        data={"name": "Red lamp", "kind": "red", "picture": SimpleUploadedFile("l.png", upload)}
    )
    assert not serializer.is_valid()
    assert "picture" in serializer.errors
    assert stored_files(media_root) == []


@pytest.mark.parametrize("upload", [REFUSED["tiff"], REFUSED["half-a-png"]], ids=["tiff", "half-a-png"])
def test_saving_a_refused_photo_through_the_orm_raises_and_leaves_nothing(listing_factory, media_root, upload):
    with pytest.raises(ValidationError), transaction.atomic():
        listing_factory(image=upload)
    assert not Listing.objects.exists()
    assert stored_files(media_root) == []


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "GIF"])
def test_the_api_refuses_a_photo_cut_to_half_with_a_400_and_stores_nothing(seller_api, media_root, fmt):
    response = create_listing(seller_api, f"photo.{fmt.lower()}", half_of(fmt))
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid"
    assert "truncated" in error["fields"]["image"][0]
    assert not Listing.objects.exists()
    assert stored_files(media_root) == []


# -- Nothing left behind: replaced and deleted photos, identical uploads -----------------


def test_identical_uploads_share_one_stored_file(seller_api, media_root):
    first = create_listing(seller_api, "a.jpg", polyglot()).json()
    second = create_listing(seller_api, "b.jpg", polyglot()).json()
    assert first["image"] == second["image"]  # not <digest>_eurIRBo.jpg
    assert len(stored_files(media_root)) == 1
    assert is_sanitised(Listing.objects.first().image.name, stored_files(media_root)[0].read_bytes())


def test_an_upload_under_a_taken_name_with_other_bytes_is_stored_apart(seller_api, media_root):
    first = create_listing(seller_api, "a.jpg", polyglot()).json()
    taken = media_root / Listing.objects.get(pk=first["id"]).image.name
    other = bytes(len(taken.read_bytes()))  # the same size, other bytes
    taken.write_bytes(other)
    second = create_listing(seller_api, "b.jpg", polyglot()).json()
    assert second["image"] != first["image"]
    assert taken.read_bytes() == other


def test_replacing_a_photo_through_the_api_deletes_the_old_file_after_commit(
    seller_api, media_root, django_capture_on_commit_callbacks
):
    listing = create_listing(seller_api, "a.jpg", polyglot()).json()
    old = stored_files(media_root)
    new_photo = SimpleUploadedFile("b.png", image_bytes((20, 30, 200)))
    with django_capture_on_commit_callbacks(execute=True):
        response = seller_api.patch(f"/api/listings/{listing['id']}/", {"image": new_photo}, format="multipart")
    assert response.status_code == 200, response.content
    assert stored_files(media_root) == [media_root / Listing.objects.get().image.name]
    assert stored_files(media_root) != old
    assert seller_api.get(listing["image"].removeprefix("http://testserver")).status_code == 404


def test_deleting_a_listing_through_the_api_deletes_its_file_after_commit(
    seller_api, media_root, django_capture_on_commit_callbacks
):
    listing = create_listing(seller_api, "a.jpg", polyglot()).json()
    with django_capture_on_commit_callbacks(execute=True):
        assert seller_api.delete(f"/api/listings/{listing['id']}/").status_code == 204
    assert stored_files(media_root) == []


def test_a_file_shared_by_identical_uploads_stays_while_a_row_references_it(
    seller_api, media_root, django_capture_on_commit_callbacks
):
    first = create_listing(seller_api, "a.jpg", polyglot()).json()
    second = create_listing(seller_api, "b.jpg", polyglot()).json()
    with django_capture_on_commit_callbacks(execute=True):
        seller_api.delete(f"/api/listings/{first['id']}/")
    assert stored_files(media_root) == [media_root / Listing.objects.get(pk=second["id"]).image.name]
    with django_capture_on_commit_callbacks(execute=True):
        seller_api.delete(f"/api/listings/{second['id']}/")
    assert stored_files(media_root) == []


def test_a_rolled_back_replacement_keeps_the_old_file(
    listing_factory, media_root, photo, django_capture_on_commit_callbacks
):
    listing = listing_factory(image=photo("red", "cup"))
    old = media_root / listing.image.name

    def replace_then_fail():
        with transaction.atomic():
            listing.image = SimpleUploadedFile("b.png", image_bytes((20, 30, 200)))
            listing.save()
            raise RuntimeError

    with django_capture_on_commit_callbacks(execute=True), pytest.raises(RuntimeError):
        replace_then_fail()
    assert old.is_file()
    assert Listing.objects.get().image.name == str(old.relative_to(media_root))


def test_replacing_a_photo_in_the_admin_change_form_deletes_the_old_file_after_commit(
    admin_form, media_root, demo_moderation, listing_factory, photo, django_capture_on_commit_callbacks
):
    listing = listing_factory(image=photo("red", "cup"))
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_form(image_bytes((20, 30, 200)), url=f"/admin/catalog/listing/{listing.pk}/change/")
    assert response.status_code == 302
    listing.refresh_from_db()
    assert stored_files(media_root) == [media_root / listing.image.name]


# -- A shared file deleted at the moment a save of the same picture is under way ----------
# Two sessions at once, each in its own thread with its own database connection. A hook
# (a wrapper of the named function) holds one of them at the bad moment until the other
# has gone on.


def holding(monkeypatch, owner, attr: str, *, when=lambda *args: True):
    """Hold the thread that calls ``owner.attr`` (for ``when(*its args)``), after the call for
    a function and before it for a method named ``delete``: (reached, go_on) events."""
    reached, go_on = threading.Event(), threading.Event()
    real = getattr(owner, attr)

    def held(*args, **kwargs):
        if attr == "delete" and when(*args):
            reached.set()
            assert go_on.wait(10)
        result = real(*args, **kwargs)
        if attr != "delete" and when(*args):
            reached.set()
            assert go_on.wait(10)
        return result

    monkeypatch.setattr(owner, attr, held)
    return reached, go_on


def in_thread(results: dict, key: str, work) -> threading.Thread:
    def run():
        try:
            results[key] = work()
        except BaseException as exc:  # the thread's failure is the test's
            results[key] = exc
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def api_for(user) -> APIClient:
    api = APIClient()
    api.force_authenticate(user)
    return api


def kept_and_alone(listing, media_root):
    """The listing's committed row names a file holding its picture, and no other file is stored."""
    listing.refresh_from_db()
    stored = media_root / listing.image.name
    assert stored.is_file()
    assert is_sanitised(listing.image.name, stored.read_bytes())
    assert stored_files(media_root) == [stored]
    assert listing.content_hash == get_spec(Listing).content_hash(listing)


def post_again(user, data):
    response = create_listing(api_for(user), "again.jpg", data)
    assert response.status_code == 201, response.content
    return Listing.objects.get(pk=response.json()["id"])


def save_again(user, data):
    return Listing.objects.create(
        seller=user, category=Category.objects.get(), title="Red mug", price=8, image=SimpleUploadedFile("b.jpg", data)
    )


def save_again_atomically(user, data):
    with transaction.atomic():
        return save_again(user, data)


SAVES = {"api-post": post_again, "orm-autocommit": save_again, "orm-atomic": save_again_atomically}


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("save", SAVES.values(), ids=SAVES.keys())
def test_a_listing_deleted_while_the_same_picture_is_saved_again_leaves_the_new_row_its_file(
    seller_api, user_factory, media_root, photo, monkeypatch, save
):
    """The user trial: alice deletes listing A while she posts A's photo again. The save has
    found A's file and reuses it; A's delete commits and its cleanup, which cannot see the
    new row, deletes the file; then the new row is written. Its file is stored again."""
    alice = user_factory(username="alice")
    picture = photo("red", "cup")
    first = create_listing(api_for(alice), "a.jpg", picture).json()
    shared = media_root / Listing.objects.get(pk=first["id"]).image.name
    reached, go_on = holding(monkeypatch, uploads, "store_photo")
    results = {}
    saver = in_thread(results, "saved", lambda: save(alice, picture))
    assert reached.wait(10)
    assert api_for(alice).delete(f"/api/listings/{first['id']}/").status_code == 204
    assert not shared.exists()  # the bad moment: the cleanup deleted the file the save reuses
    go_on.set()
    saver.join(10)
    saved = results["saved"]
    assert isinstance(saved, Listing), saved
    assert saved.image.name == str(shared.relative_to(media_root))
    kept_and_alone(saved, media_root)


@pytest.mark.django_db(transaction=True)
def test_a_cleanup_that_checked_before_the_save_committed_deletes_before_the_save_stores_again(
    seller_api, user_factory, media_root, photo, monkeypatch
):
    """The late deleter: A's cleanup found no row referencing the file, and is held before
    deleting it, while the POST of the same picture commits its row. The save waits for the
    cleanup's lock, then finds the file gone and stores it again: the POST answers 201."""
    alice = user_factory(username="alice")
    picture = photo("red", "cup")
    first = create_listing(api_for(alice), "a.jpg", picture).json()
    shared = media_root / Listing.objects.get(pk=first["id"]).image.name
    storage_class = type(Listing._meta.get_field("image").storage._wrapped)
    reached, go_on = holding(monkeypatch, storage_class, "delete")
    results = {}
    deleter = in_thread(results, "deleted", lambda: api_for(alice).delete(f"/api/listings/{first['id']}/"))
    assert reached.wait(10)
    saver = in_thread(results, "saved", lambda: post_again(alice, picture))
    saver.join(2)
    assert saver.is_alive(), "the save did not wait for the cleanup's lock on the file"
    assert not Listing.objects.filter(pk=first["id"]).exists()
    go_on.set()
    deleter.join(10)
    saver.join(10)
    assert results["deleted"].status_code == 204
    saved = results["saved"]
    assert isinstance(saved, Listing), saved
    assert saved.image.name == str(shared.relative_to(media_root))
    kept_and_alone(saved, media_root)


@pytest.mark.django_db(transaction=True)
def test_a_cleanup_that_starts_after_the_save_committed_keeps_the_file(seller_api, user_factory, media_root, photo):
    alice = user_factory(username="alice")
    picture = photo("red", "cup")
    first = create_listing(api_for(alice), "a.jpg", picture).json()
    saved = post_again(alice, picture)
    assert api_for(alice).delete(f"/api/listings/{first['id']}/").status_code == 204
    kept_and_alone(saved, media_root)
    saved.delete()
    assert stored_files(media_root) == []  # the last row takes the file with it


def test_a_listing_whose_file_is_gone_is_saved_and_its_task_records_image_missing(seller_api, media_root):
    """A file gone from storage (deleted by hand, lost) is no 500 for the seller's next save:
    the listing goes back to pending and its task names what is wrong."""
    created = create_listing(seller_api, "a.jpg", polyglot()).json()
    listing = Listing.objects.get(pk=created["id"])
    (media_root / listing.image.name).unlink()
    response = seller_api.patch(f"/api/listings/{listing.pk}/", {"title": "Red mug, boxed"}, format="multipart")
    assert response.status_code == 200, response.content
    listing.refresh_from_db()
    assert listing.moderation_status == S.PENDING
    score_now(listing)
    assert (listing.moderation_status, listing.moderation_error) == (S.ERROR, "image_missing")


# -- Photos stored before the upload rules --------------------------------------------


@pytest.fixture
def legacy(demo_moderation, listing_factory, media_root, photo, admin_user):
    """Listings whose files were stored under the seller's name, as before the upload rules."""
    from moderation import transitions

    polyglot_listing = listing_factory(stored_image=photo("red", "cup") + SCRIPT)
    score_now(polyglot_listing)
    transitions.approve(polyglot_listing, actor=admin_user)
    html_name = default_storage.save("listings/legacy/x.html", ContentFile(image_bytes((200, 30, 30))))
    renamed = listing_factory(title="Red box")
    Listing.objects.filter(pk=renamed.pk).update(image=html_name)
    renamed.refresh_from_db()
    broken = listing_factory(stored_image=half_of("PNG"))
    uploaded = listing_factory(title="Red cup")  # through the upload rules: nothing to do
    return {"polyglot": polyglot_listing, "renamed": renamed, "broken": broken, "uploaded": uploaded}


def test_the_sanitize_command_dry_run_changes_nothing(legacy, media_root):
    before = {path: path.read_bytes() for path in stored_files(media_root)}
    out = io.StringIO()
    call_command("moderation_sanitize_images", "--dry-run", stdout=out, stderr=io.StringIO())
    assert "catalog.listing: 2 to re-store" in out.getvalue()
    assert {path: path.read_bytes() for path in stored_files(media_root)} == before


def test_the_sanitize_command_restores_old_files_and_keeps_the_moderation_state(
    legacy, media_root, django_capture_on_commit_callbacks
):
    old_names = {key: listing.image.name for key, listing in legacy.items()}
    decisions = Decision.objects.count()
    out, err = io.StringIO(), io.StringIO()
    with django_capture_on_commit_callbacks(execute=True):  # old files go when the new names are committed
        call_command("moderation_sanitize_images", stdout=out, stderr=err)
    assert "catalog.listing: 2 re-stored, 1 already stored safely, 1 refused" in out.getvalue()
    assert f"catalog.listing {legacy['broken'].pk}: image_truncated" in err.getvalue()
    for key in ("polyglot", "renamed"):
        listing = Listing.objects.get(pk=legacy[key].pk)
        data = (media_root / listing.image.name).read_bytes()
        assert is_sanitised(listing.image.name, data)
        assert b"<script" not in data
        assert not (media_root / old_names[key]).exists()
    assert (media_root / old_names["broken"]).exists()  # refused: left for a person to see
    polyglot_listing = Listing.objects.get(pk=legacy["polyglot"].pk)
    assert polyglot_listing.moderation_status == S.APPROVED
    polyglot_listing.price = 7
    polyglot_listing.save()  # the same picture: no new review
    assert Listing.objects.get(pk=legacy["polyglot"].pk).moderation_status == S.APPROVED
    assert Decision.objects.count() == decisions
    again = io.StringIO()
    call_command("moderation_sanitize_images", stdout=again, stderr=io.StringIO())
    assert "catalog.listing: 0 re-stored, 3 already stored safely, 1 refused" in again.getvalue()
