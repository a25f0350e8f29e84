"""The MODERATION settings dict: defaults, unknown and renamed keys, and the caches reset when it changes."""

import pytest
from django.core.exceptions import ImproperlyConfigured

from moderation import scoring
from moderation.conf import DEFAULTS, moderation_settings
from moderation.embedders import get_embedder


def test_the_sites_settings_are_merged_over_the_defaults(settings):
    settings.MODERATION = {"BATCH_SIZE": 4}
    assert moderation_settings.BATCH_SIZE == 4
    assert DEFAULTS["MAX_ATTEMPTS"] == moderation_settings.MAX_ATTEMPTS == 5


def test_an_unknown_setting_is_refused_with_its_name(settings):
    settings.MODERATION = {"BATCH_SIZ": 4}
    with pytest.raises(ImproperlyConfigured, match=r"Unknown MODERATION setting\(s\): BATCH_SIZ\. Known settings: "):
        _ = moderation_settings.BATCH_SIZE


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("RETRY_BASE_DELAY", "RETRY_BASE_DELAY_SECONDS"),
        ("RETRY_MAX_DELAY", "RETRY_MAX_DELAY_SECONDS"),
        ("ERROR_RETRY_DELAY", "ERROR_RETRY_DELAY_SECONDS"),
        ("STALE_AFTER", "STALE_AFTER_SECONDS"),
    ],
)
def test_a_duration_setting_under_its_old_name_names_the_new_one(settings, old, new):
    settings.MODERATION = {old: 30}
    with pytest.raises(ImproperlyConfigured, match=rf"{old} \(renamed to {new}\)"):
        _ = moderation_settings.MAX_ATTEMPTS
    settings.MODERATION = {new: 30}
    assert getattr(moderation_settings, new) == 30


def test_a_new_moderation_setting_builds_a_new_embedder(settings, demo_moderation):
    first = get_embedder()
    assert get_embedder() is first  # built once, kept warm
    settings.MODERATION = {**demo_moderation, "BATCH_SIZE": 3}
    assert get_embedder() is not first


def test_a_new_moderation_setting_drops_the_cached_category_prompts(settings, demo_moderation):
    scoring.category_matrix(get_embedder(), ["Kitchen", "Toys"])
    assert scoring._category_matrix.cache_info().currsize > 0
    settings.MODERATION = {**demo_moderation, "CATEGORY_PROMPTS": ["a picture of {category}"]}
    assert scoring._category_matrix.cache_info().currsize == 0


def test_the_single_category_prompt_of_earlier_versions_names_the_list_that_replaced_it(settings):
    settings.MODERATION = {"CATEGORY_PROMPT": "a photo of {category}"}
    with pytest.raises(
        ImproperlyConfigured, match=r"CATEGORY_PROMPT \(renamed to CATEGORY_PROMPTS, a list of templates\)"
    ):
        _ = moderation_settings.CATEGORY_PROMPTS
