"""System checks: misconfiguration is a warning or an error with an id, a hint and obj=."""

from django.db import models
from django.test.utils import isolate_apps

from moderation import registry
from moderation.checks import check_image_fields
from moderation.models import ModeratedModel


def test_the_demo_and_test_models_store_photos_under_the_upload_rules():
    assert check_image_fields() == []


@isolate_apps("tests.testapp")
def test_a_registered_model_with_a_plain_image_field_gets_a_warning(monkeypatch):
    monkeypatch.setattr(registry, "_registry", dict(registry._registry))

    @registry.register(text_fields=["name"], image_field="photo")
    class Poster(ModeratedModel):
        name = models.CharField(max_length=50)
        photo = models.ImageField()

        class Meta(ModeratedModel.Meta):
            app_label = "testapp"

    [warning] = check_image_fields()
    assert warning.id == "moderation.W003"
    assert warning.obj is Poster._meta.get_field("photo")
    assert "ModeratedImageField" in warning.hint
    assert "moderation_sanitize_images" in warning.hint
