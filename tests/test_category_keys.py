"""A category's key by its slug, from the cache (catalog/category_keys.py)."""

import pytest

from catalog import category_keys
from catalog.models import Category

pytestmark = pytest.mark.django_db


def test_a_slug_is_looked_up_once_then_read_from_the_cache(category_factory, django_assert_num_queries):
    kitchen = category_factory("Kitchen")
    with django_assert_num_queries(1):
        assert category_keys.key_of("kitchen") == kitchen.pk
    with django_assert_num_queries(0):
        assert category_keys.key_of("kitchen") == kitchen.pk


def test_a_slug_that_names_no_category_is_not_cached(category_factory, django_assert_num_queries):
    with django_assert_num_queries(1):
        assert category_keys.key_of("garden") is None
    garden = category_factory("Garden")  # created later: found at once
    assert category_keys.key_of("garden") == garden.pk


def test_a_renamed_category_is_found_by_its_new_slug_and_no_longer_by_its_old(category_factory):
    kitchen = category_factory("Kitchen")
    assert category_keys.key_of("kitchen") == kitchen.pk
    kitchen.slug = "cookware"
    kitchen.save()
    assert category_keys.key_of("kitchen") is None
    assert category_keys.key_of("cookware") == kitchen.pk


def test_a_deleted_category_is_forgotten(category_factory):
    garden = category_factory("Garden")
    assert category_keys.key_of("garden") == garden.pk
    Category.objects.filter(pk=garden.pk).get().delete()
    assert category_keys.key_of("garden") is None
