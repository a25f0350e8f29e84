"""Shared fixtures: factories for users, categories and listings, and the embedded
server's lifecycle (a server the test run started is stopped when the run ends)."""

import os
from decimal import Decimal

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile

from config import embedded_postgres
from tests.helpers import demo_moderation_settings, image_bytes

_started_embedded_server = False


def _uses_embedded_server() -> bool:
    return not os.environ.get("DATABASE_URL")


def pytest_configure(config):
    global _started_embedded_server
    _started_embedded_server = _uses_embedded_server() and embedded_postgres.postmaster_pid() is None


def pytest_unconfigure(config):
    # After pytest-django has dropped the test database: stop the server if this run
    # started it, so that CI and a developer's machine are left as they were.
    if _started_embedded_server:
        embedded_postgres.stop()


@pytest.fixture(autouse=True)
def _empty_cache():
    """Each test starts with an empty cache (the throttles' counts of earlier tests)."""
    from django.core.cache import cache

    cache.clear()


@pytest.fixture
def media_root(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    return settings.MEDIA_ROOT


@pytest.fixture
def user_factory(django_user_model):
    counter = iter(range(10**6))

    def make(**kwargs):
        kwargs.setdefault("username", f"seller{next(counter)}")
        return django_user_model.objects.create_user(password="pw-for-tests", **kwargs)

    return make


@pytest.fixture
def category_factory():
    from catalog.models import Category

    def make(name="Kitchen", **kwargs):
        return Category.objects.get_or_create(name=name, defaults={"slug": name.lower().replace(" ", "-"), **kwargs})[0]

    return make


@pytest.fixture
def listing_factory(media_root, user_factory, category_factory):
    from catalog.models import Listing

    def make(*, color=(200, 30, 30), image=None, stored_image=None, **kwargs):
        """``image``: bytes uploaded through the model field; ``stored_image``: bytes written
        to storage as they are, as a file stored before the upload rules (or by another
        program) would be."""
        kwargs.setdefault("seller", user_factory())
        kwargs.setdefault("category", category_factory())
        kwargs.setdefault("title", "Red mug")
        kwargs.setdefault("price", Decimal("9.50"))
        if stored_image is not None:
            return Listing.objects.create(
                image=default_storage.save("listings/photo", ContentFile(stored_image)), **kwargs
            )
        upload = SimpleUploadedFile("photo.png", image if image is not None else image_bytes(color))
        return Listing.objects.create(image=upload, **kwargs)

    return make


@pytest.fixture(scope="session")
def demo_model_dir(tmp_path_factory):
    from moderation.embedders.demo_model import build_colour_words_model

    return build_colour_words_model(tmp_path_factory.mktemp("models") / "colour-words")


@pytest.fixture(scope="session")
def bpe_model_dir(tmp_path_factory):
    from tests.model_builders import build_bpe_model

    return build_bpe_model(tmp_path_factory.mktemp("models") / "bpe-64")


@pytest.fixture
def demo_moderation(settings, demo_model_dir):
    """MODERATION on the demo model (the embedder is rebuilt for the new settings)."""
    settings.MODERATION = demo_moderation_settings(demo_model_dir)
    return settings.MODERATION


@pytest.fixture
def photo():
    """JPEG bytes of the demo catalogue's kind: one object of a colour on a light background."""
    from catalog.demo import draw_photo

    def make(colour: str, shape: str = "box", seed: str | None = None) -> bytes:
        return draw_photo(colour, shape, seed=seed or f"{colour}-{shape}")

    return make


@pytest.fixture
def gadget_factory(media_root, user_factory):
    from tests.testapp.models import Gadget

    def make(*, picture: bytes, **kwargs):
        kwargs.setdefault("name", "Red lamp")
        kwargs.setdefault("kind", Gadget.Kind.RED)
        return Gadget.objects.create(picture=SimpleUploadedFile("g.jpg", picture), **kwargs)

    return make


@pytest.fixture
def moderator(user_factory):
    """A staff user who may view and change listings and decide on them."""
    from django.contrib.auth.models import Permission

    user = user_factory(username="moderator", is_staff=True)
    user.user_permissions.add(
        *Permission.objects.filter(
            codename__in=[
                "moderate",
                "view_decision",
                "view_listing",
                "change_listing",
                "view_listingreview",
                "change_listingreview",
                "view_gadget",
                "change_gadget",
            ]
        )
    )
    return user


@pytest.fixture
def staff_without_moderation(user_factory):
    """Staff who may see and edit listings, but not decide on them."""
    from django.contrib.auth.models import Permission

    user = user_factory(username="clerk", is_staff=True)
    user.user_permissions.add(
        *Permission.objects.filter(
            codename__in=["view_listing", "change_listing", "view_listingreview", "change_listingreview"]
        )
    )
    return user


@pytest.fixture
def review_catalogue(demo_moderation, listing_factory, user_factory, category_factory, photo):
    """Scored listings: one ok, one mismatch, one duplicate, one photo that cannot be decoded."""
    from tests.helpers import score_now

    for name in ("Clothing", "Furniture"):
        category_factory(name)
    alice, bob = user_factory(username="alice"), user_factory(username="bob")
    ok = listing_factory(title="Red ceramic mug", image=photo("red", "cup"), seller=alice)
    score_now(ok)
    mismatch = listing_factory(title="Red hiking boots", image=photo("blue", "shoe"), seller=alice)
    duplicate = listing_factory(title="Mug, red", image=photo("red", "cup"), seller=bob)
    broken = listing_factory(title="Green chair", stored_image=b"not an image", seller=bob)
    for listing in (mismatch, duplicate, broken):
        score_now(listing)
    return {"ok": ok, "mismatch": mismatch, "duplicate": duplicate, "broken": broken}


@pytest.fixture
def many_listings(demo_moderation, user_factory, category_factory):
    """1,000 scored listings with random unit vectors, 10% of them in "Rare"; bulk-made.
    Returns the vectors, in the order of the listings' keys."""
    import numpy as np
    from django.db import connection

    from catalog.models import Listing
    from moderation.models import ModerationStatus

    rng = np.random.default_rng(3)
    seller = user_factory()
    common, rare = category_factory("Common"), category_factory("Rare")
    vectors = rng.standard_normal((1000, 512)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    Listing.objects.bulk_create(
        [
            Listing(
                seller=seller,
                category=rare if i % 10 == 0 else common,
                title=f"item {i}",
                price=i,
                image="x.jpg",
                moderation_status=ModerationStatus.OK,
                embedding_model="demo:colour-words-v1",
                image_vector=vector,
                text_vector=vector,
            )
            for i, vector in enumerate(vectors)
        ]
    )
    with connection.cursor() as cursor:
        # The HNSW indexes still hold the rows earlier tests inserted and rolled back (no
        # vacuum runs inside a test run), which thins the graph around the live rows: a
        # rebuild keeps the approximate search as good as on a fresh table.
        cursor.execute("REINDEX TABLE catalog_listing")
        cursor.execute("ANALYZE catalog_listing")
    return vectors


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup, django_db_blocker):
    """pytest-django's test database, plus one step before it is dropped: end the
    sessions that other threads and processes of the run left on it (the live
    server's request threads, qcluster workers), so the drop never fails."""
    yield
    import psycopg
    from django.db import connection

    with django_db_blocker.unblock():
        name = connection.settings_dict["NAME"]
        params = {
            k: v for k, v in connection.get_connection_params().items() if k in ("host", "port", "user", "password")
        }
        connection.close()
        with psycopg.connect(dbname="postgres", autocommit=True, **params) as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
                [name],
            )
