"""The review queue in the admin, through Django's test client."""

import re

import pytest
from django_q.models import OrmQ

from moderation.models import Decision, ModerationStatus

pytestmark = pytest.mark.django_db
S = ModerationStatus
QUEUE = "/admin/catalog/listingreview/"


def listing_url(listing):
    return f"/admin/catalog/listing/{listing.pk}/change/"


def test_the_queue_shows_what_needs_a_person_most_severe_first(client, moderator, review_catalogue):
    client.force_login(moderator)
    page = client.get(QUEUE).content.decode()
    titles = re.findall(r'<th class="field-title"><a [^>]*>([^<]+)</a>', page)
    assert titles == ["Mug, red", "Red hiking boots", "Green chair"]  # duplicate 30, mismatch 20, error 0
    assert "The same photo is used by another seller" in page
    assert "image_format" in page
    assert "text/photo: " in page
    assert "<img src=" in page


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("flag_reason=duplicate_image", ["Mug, red"]),
        ("flag_reason=text_image_mismatch", ["Red hiking boots"]),
        ("moderation_status=error", ["Green chair"]),
        ("q=alice", ["Red hiking boots"]),
    ],
)
def test_the_queue_filters_by_reason_and_status_and_searches_by_seller(
    client, moderator, review_catalogue, query, expected
):
    client.force_login(moderator)
    page = client.get(f"{QUEUE}?{query}").content.decode()
    assert re.findall(r'<th class="field-title"><a [^>]*>([^<]+)</a>', page) == expected


@pytest.mark.parametrize("page", [QUEUE, "/admin/catalog/listing/"])
@pytest.mark.parametrize("parameter", ["moderation_status", "flag_reason"])
def test_a_filter_value_outside_the_filters_choices_is_a_bad_lookup_not_a_500(
    client, moderator, review_catalogue, page, parameter
):
    client.force_login(moderator)
    for value in ("%00", "bogus"):
        response = client.get(f"{page}?{parameter}={value}")
        assert response.status_code == 302, value
        assert response.url == f"{page}?e=1"


LIST_PAGES = {
    QUEUE: ["moderation_status", "flag_reason", "category__id__exact", "title", "created_at__year"],
    "/admin/catalog/listing/": ["moderation_status", "flag_reason", "category__id__exact", "title", "created_at__year"],
    "/admin/testapp/gadget/": ["moderation_status", "flag_reason", "kind", "name"],
    "/admin/catalog/category/": ["name", "slug"],
    "/admin/moderation/decision/": [
        "to_status",
        "content_type__id__exact",
        "actor__isempty",
        "reason",
        "created_at__year",
        "created_at__month",
        "created_at__day",
    ],
    "/admin/moderation/decision/dashboard/": ["moderation_status"],
}
HOSTILE_VALUES = ["%00", "a%00b", "99999999999999999999999", "-1", "%ED%A0%80", "bogus"]
# Issue #10 follow-up, fault 6: hand-typed lookups that Django builds and PostgreSQL
# refuses only when the query runs (DataError, ProgrammingError), or that fail in Python
# then (IndexError, ValueError); and the add page's prefill of an autocomplete field.
LISTING_LOOKUPS = {
    "title__regex": ["("],
    "title__iregex": ["["],
    "flag_reasons__contains": ["bogus", "text_image_mismatch"],
    "flag_reasons__overlap": ["bogus"],
    "title__range": ["a,b,c"],
    "price__range": ["1"],
}
HOSTILE_LOOKUPS = {
    QUEUE: LISTING_LOOKUPS,
    "/admin/catalog/listing/": LISTING_LOOKUPS,
    "/admin/testapp/gadget/": {"name__regex": ["("], "flag_reasons__overlap": ["bogus"], "name__range": ["a"]},
    "/admin/catalog/category/": {"name__regex": ["("], "slug__iregex": ["["], "name__range": ["a,b,c"]},
    "/admin/moderation/decision/": {
        "reason__regex": ["("],
        "flag_reasons__contains": ["bogus"],
        "created_at__range": ["1"],
        "object_pk__iregex": ["*"],
    },
    "/admin/catalog/listing/add/": {"category": ["abc", "1.5"], "seller": ["abc"]},
}


@pytest.mark.parametrize(
    ("page", "parameter", "values"),
    [
        *[
            (page, name, HOSTILE_VALUES)
            for page, names in LIST_PAGES.items()
            for name in [*names, "q", "o", "p", "all"]
        ],
        *[(page, name, values) for page, lookups in HOSTILE_LOOKUPS.items() for name, values in lookups.items()],
        ("/admin/catalog/listing/add/", "category", HOSTILE_VALUES),
    ],
)
def test_hostile_query_parameters_on_admin_pages_are_bad_lookups_or_empty_pages_never_500s(
    admin_client, review_catalogue, page, parameter, values
):
    for value in values:
        response = admin_client.get(f"{page}?{parameter}={value}")
        assert response.status_code in (200, 302), (value, response.status_code)
        if response.status_code == 302:
            assert response.url == f"{page}?e=1", value


@pytest.mark.parametrize("key", ["\x00", "abc", "1.5"])
@pytest.mark.parametrize(
    ("page", "action"),
    [
        (QUEUE, "rescan_selected"),
        ("/admin/catalog/listing/", "reject_selected"),
        ("/admin/testapp/gadget/", "rescan_selected"),
        ("/admin/catalog/category/", "delete_selected"),
    ],
)
def test_a_bulk_action_on_a_tampered_selection_changes_nothing_and_says_so(
    admin_client, review_catalogue, page, action, key
):
    """Issue #10 follow-up, fault 6: a selected key that is no key of the model was a 500 (ValueError)."""
    from catalog.models import Category

    before = Decision.objects.count(), Category.objects.count()
    response = admin_client.post(page, {"action": action, "_selected_action": [key], "apply": "1"}, follow=True)
    assert response.status_code == 200
    assert "The selection holds keys of no item. No items have been changed." in response.content.decode()
    assert (Decision.objects.count(), Category.objects.count()) == before


@pytest.mark.parametrize("object_id", ["%00", "abc", "1.5", "99999999999999999999"])
@pytest.mark.parametrize("page", ["/admin/catalog/listing/", QUEUE, "/admin/testapp/gadget/"])
def test_a_decision_on_an_id_that_is_no_object_is_a_404(client, moderator, review_catalogue, page, object_id):
    client.force_login(moderator)
    assert client.post(f"{page}{object_id}/moderation/approve/", {"reason": "x"}).status_code == 404


@pytest.mark.parametrize("term", ["%00", "a%00b"])
def test_a_category_autocomplete_term_the_database_cannot_hold_finds_nothing(admin_client, review_catalogue, term):
    query = f"term={term}&app_label=catalog&model_name=listing&field_name=category"
    response = admin_client.get(f"/admin/autocomplete/?{query}")
    assert response.status_code == 200
    assert response.json()["results"] == []
    assert admin_client.get(f"/admin/autocomplete/?{query.replace(term, 'kit')}").json()["results"]


def test_the_listing_admin_has_a_needs_review_filter_and_a_category_filter(client, moderator, review_catalogue):
    client.force_login(moderator)
    page = client.get("/admin/catalog/listing/?moderation_status=review").content.decode()
    assert len(re.findall(r'<th class="field-title">', page)) == 3
    assert "By category" in page or "category" in page


def test_the_detail_page_puts_text_and_photo_side_by_side_with_scores_duplicate_and_history(
    client, moderator, review_catalogue
):
    client.force_login(moderator)
    duplicate, original = review_catalogue["duplicate"], review_catalogue["ok"]
    page = client.get(listing_url(duplicate)).content.decode()
    assert 'id="moderation-review"' in page
    assert 'id="moderation-photo"' in page
    assert "nearly identical" in page
    assert listing_url(original) in page  # the other listing, next to it
    assert original.image.url in page
    assert "pending &rarr; flagged" in page
    assert 'id="moderation-decide-form"' in page


@pytest.mark.parametrize("page", ["/admin/catalog/listing/", QUEUE])
@pytest.mark.parametrize("title", ["\u200b\u200b\u200b", "\u200e\u2060\ufeff\x01", "a\u200b\u200bb"])
def test_a_title_without_three_visible_characters_is_a_form_error_in_the_admin(
    client, moderator, review_catalogue, page, title
):
    client.force_login(moderator)
    listing = review_catalogue["mismatch"]
    form = {
        "seller": listing.seller_id,
        "title": title,
        "description": "",
        "category": listing.category_id,
        "price": "9.50",
    }
    response = client.post(f"{page}{listing.pk}/change/", form)
    assert response.status_code == 200  # the form again, with its errors
    assert "visible characters" in str(response.context["adminform"].form.errors["title"])
    listing.refresh_from_db()
    assert listing.title == "Red hiking boots"
    form["title"] = "Red boots"
    assert client.post(f"{page}{listing.pk}/change/", form).status_code == 302  # the same form, valid


@pytest.mark.parametrize("page", ["/admin/catalog/listing/", QUEUE])
def test_a_moderator_with_view_only_access_sees_a_listings_page_and_its_review_panel(
    client, user_factory, review_catalogue, page
):
    """Issue #10 follow-up, fault 5: a view-only form has no editable title (it was a 500)."""
    from django.contrib.auth.models import Permission

    viewer = user_factory(username="viewer", is_staff=True)
    codenames = ["moderate", "view_listing", "view_listingreview"]
    viewer.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
    client.force_login(viewer)
    listing = review_catalogue["mismatch"]
    response = client.get(f"{page}{listing.pk}/change/")
    assert response.status_code == 200
    html = response.content.decode()
    assert 'id="moderation-review"' in html
    assert 'name="title"' not in html  # shown, not editable
    assert "Red hiking boots" in html


def test_a_mismatch_is_explained_in_plain_words(client, moderator, review_catalogue):
    client.force_login(moderator)
    page = client.get(listing_url(review_catalogue["mismatch"])).content.decode()
    assert "below the threshold: the photo may not show what the text describes" in page
    assert "The photo looks most like" in page


def test_a_moderator_approves_from_the_detail_page_with_a_reason(client, moderator, review_catalogue):
    client.force_login(moderator)
    listing = review_catalogue["mismatch"]
    response = client.post(f"/admin/catalog/listing/{listing.pk}/moderation/approve/", {"reason": "dark photo"})
    assert response.status_code == 302
    listing.refresh_from_db()
    assert listing.moderation_status == S.APPROVED
    decision = Decision.objects.filter(object_pk=str(listing.pk)).first()
    assert (decision.actor, decision.reason, decision.to_status) == (moderator, "dark photo", S.APPROVED)


def test_staff_without_the_moderation_permission_cannot_decide(client, staff_without_moderation, review_catalogue):
    client.force_login(staff_without_moderation)
    listing = review_catalogue["mismatch"]
    assert client.get(QUEUE).status_code == 200
    page = client.get(listing_url(listing)).content.decode()
    assert 'id="moderation-decide-form"' not in page
    assert "approve_selected" not in client.get(QUEUE).content.decode()
    assert client.post(f"/admin/catalog/listing/{listing.pk}/moderation/approve/").status_code == 403
    client.post(QUEUE, {"action": "approve_selected", "_selected_action": [listing.pk], "apply": "1"})
    listing.refresh_from_db()
    assert listing.moderation_status == S.FLAGGED


def test_bulk_reject_asks_for_a_reason_then_rejects_every_selected_listing(client, moderator, review_catalogue):
    client.force_login(moderator)
    chosen = [review_catalogue["mismatch"], review_catalogue["duplicate"]]
    ids = [listing.pk for listing in chosen]
    form = client.post(QUEUE, {"action": "reject_selected", "_selected_action": ids})
    assert form.status_code == 200
    assert 'name="reason"' in form.content.decode()
    done = client.post(
        QUEUE,
        {"action": "reject_selected", "_selected_action": ids, "apply": "1", "reason": "misleading photos"},
        follow=True,
    )
    assert "2 rejected." in done.content.decode()
    for listing in chosen:
        listing.refresh_from_db()
        assert listing.moderation_status == S.REJECTED
    assert set(Decision.objects.filter(reason="misleading photos").values_list("object_pk", flat=True)) == {
        str(pk) for pk in ids
    }


def test_bulk_approve_skips_what_cannot_be_approved_and_says_why(client, moderator, review_catalogue):
    from moderation import transitions

    client.force_login(moderator)
    mismatch, duplicate = review_catalogue["mismatch"], review_catalogue["duplicate"]
    transitions.approve(duplicate, actor=moderator)
    response = client.post(
        "/admin/catalog/listing/",
        {
            "action": "approve_selected",
            "_selected_action": [mismatch.pk, duplicate.pk],
            "apply": "1",
        },
        follow=True,
    )
    page = response.content.decode()
    assert "1 approved." in page
    assert "cannot become approved" in page


def test_rescan_queues_a_task_per_selected_listing(
    client, moderator, review_catalogue, django_capture_on_commit_callbacks
):
    client.force_login(moderator)
    before = OrmQ.objects.count()
    ids = [review_catalogue["broken"].pk, review_catalogue["mismatch"].pk]
    with django_capture_on_commit_callbacks(execute=True):
        client.post(QUEUE, {"action": "rescan_selected", "_selected_action": ids})
    assert OrmQ.objects.count() == before + 2
    review_catalogue["broken"].refresh_from_db()
    assert review_catalogue["broken"].moderation_status == S.PENDING


def test_the_dashboard_counts_by_status_reason_error_and_recent_scoring(client, moderator, review_catalogue):
    client.force_login(moderator)
    page = client.get("/admin/moderation/decision/dashboard/").content.decode()

    def count(attribute, value):
        return int(re.search(rf'data-{attribute}="{value}">(\d+)<', page).group(1))

    assert count("status", "ok") == 1
    assert count("status", "flagged") == 2
    assert count("status", "error") == 1
    assert count("reason", "duplicate_image") == 1
    assert count("reason", "text_image_mismatch") == 1
    assert count("error", "image_format") == 1
    assert int(re.search(r'id="scored-hour">(\d+)<', page).group(1)) == 3
    assert "<svg" in page
    assert "Kitchen" in page


def test_the_dashboard_is_for_moderators(client, staff_without_moderation, review_catalogue):
    client.force_login(staff_without_moderation)
    assert client.get("/admin/moderation/decision/dashboard/").status_code == 403


def test_another_model_gets_the_queue_with_the_mixin_alone(client, moderator, demo_moderation, gadget_factory, photo):
    from tests.helpers import score_now
    from tests.testapp.models import Gadget

    gadget = gadget_factory(name="Red lamp", kind=Gadget.Kind.RED, picture=photo("blue"))
    score_now(gadget)
    client.force_login(moderator)
    page = client.get("/admin/testapp/gadget/?moderation_status=review").content.decode()
    assert "Red lamp" in page
    assert "approve_selected" in page
    detail = client.get(f"/admin/testapp/gadget/{gadget.pk}/change/").content.decode()
    assert 'id="moderation-review"' in detail


@pytest.mark.parametrize("page", [QUEUE, "/admin/moderation/decision/dashboard/"])
def test_status_colours_and_the_chart_are_styled_by_the_static_stylesheet_alone(
    client, moderator, review_catalogue, page
):
    client.force_login(moderator)
    html = client.get(page).content.decode()
    assert "/static/moderation/admin.css" in html
    assert not re.search(r"<style|style=\"|fill=\"#", html.split("<body", 1)[1])
    if page == QUEUE:
        assert '<span class="moderation-status flagged">Flagged</span>' in html
