"""The review queue in the admin, through Django's test client."""

import re

import pytest
from django.db.models import F
from django_q.models import OrmQ

from moderation.models import Decision, ModerationStatus

pytestmark = pytest.mark.django_db
S = ModerationStatus
QUEUE = "/admin/catalog/listingreview/"


def listing_url(listing):
    return f"/admin/catalog/listing/{listing.pk}/change/"


def confirm(client, page: str, action: str, ids: list, **form):
    """A bulk decision as the browser makes it: the action asks for its page, which shows the
    listings (their status and version, in hidden fields), then that page is posted."""
    asked = client.post(page, {"action": action, "_selected_action": ids}).content.decode()
    shown = dict(re.findall(r'name="(moderation_shown_[^"]+)" value="([^"]*)"', asked))
    return client.post(page, {"action": action, "_selected_action": ids, "apply": "1", **shown, **form}, follow=True)


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
    assert "Pending &rarr; Flagged" in page
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


def test_a_title_with_a_bidi_override_is_a_form_error_in_the_admin(client, moderator, review_catalogue):
    client.force_login(moderator)
    listing = review_catalogue["mismatch"]
    form = {"seller": listing.seller_id, "title": "\u202egpj.exe Red mug", "category": listing.category_id}
    response = client.post(f"{QUEUE}{listing.pk}/change/", {**form, "description": "", "price": "9.50"})
    assert "U+202E RIGHT-TO-LEFT OVERRIDE" in str(response.context["adminform"].form.errors["title"])
    listing.refresh_from_db()
    assert listing.title == "Red hiking boots"


def test_a_stored_title_with_a_bidi_override_stays_inside_its_own_words_on_the_review_desk(
    client, moderator, review_catalogue
):
    """A title saved before the rule, or a host's model without it, cannot turn round the
    moderator's sentences around it: the app's pages isolate it in <bdi>."""
    client.force_login(moderator)
    listing = review_catalogue["mismatch"]
    type(listing).objects.filter(pk=listing.pk).update(title="\u202egpj.exe Red boots")
    shown = "<bdi>\u202egpj.exe Red boots</bdi>"
    assert f"Title:</strong> {shown}</p>" in client.get(f"{QUEUE}{listing.pk}/change/").content.decode()
    asked = client.post(QUEUE, {"action": "reject_selected", "_selected_action": [listing.pk]}).content.decode()
    assert f"<li>{shown} (" in asked
    decided = client.post(f"{QUEUE}{listing.pk}/moderation/approve/", {"reason": ""}, follow=True).content.decode()
    assert f"&ldquo;{shown}&rdquo;" in decided


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


def test_a_resubmission_is_explained_with_the_rejection_it_follows(client, moderator, review_catalogue):
    from moderation import transitions
    from tests.helpers import score_now

    listing = review_catalogue["mismatch"]
    transitions.reject(listing, actor=moderator, reason="Counterfeit <b>brand</b>")
    listing.title = "Blue hiking boots"
    listing.save()
    score_now(listing)
    assert listing.flag_reasons == ["resubmitted"]
    client.force_login(moderator)
    page = client.get(listing_url(listing)).content.decode()
    assert f"{moderator} rejected version 1 of it on" in page
    assert "Counterfeit &lt;b&gt;brand&lt;/b&gt;" in page  # escaped, as every text of a seller's or moderator's
    assert "Changed or listed again by the seller after a moderator rejected it" in page


def test_a_rejected_photo_listed_again_shows_both_photos_and_says_so(
    client, moderator, review_catalogue, listing_factory, photo
):
    from moderation import transitions
    from tests.helpers import score_now

    boots = review_catalogue["mismatch"]
    transitions.reject(boots, actor=moderator, reason="stolen photo")
    again = listing_factory(title="Hiking boots", image=photo("blue", "shoe"), seller=boots.seller)
    score_now(again)
    assert "resubmitted" in again.flag_reasons
    client.force_login(moderator)
    page = client.get(listing_url(again)).content.decode()
    assert f"the picture of the same seller&#x27;s rejected object #{boots.pk}" in page
    assert 'id="moderation-duplicate"' in page  # the two photos side by side
    assert "to the photo of another seller" not in page


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
    done = confirm(client, QUEUE, "reject_selected", ids, reason="misleading photos")
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
    response = confirm(client, "/admin/catalog/listing/", "approve_selected", [mismatch.pk, duplicate.pk])
    page = response.content.decode()
    assert "1 approved." in page
    assert "cannot become approved" in page


@pytest.mark.parametrize("action", ["approve_selected", "reject_selected", "rescan_selected"])
def test_a_bulk_action_on_a_selection_not_in_the_queue_says_so_and_changes_nothing(
    client, moderator, review_catalogue, listing_factory, action
):
    """A user trial: checkbox values changed to an ok listing's key and to 999999 gave a
    page "Approve these 0 listings:" with a button, and then no message at all."""
    ok = listing_factory(title="Red mug")
    client.force_login(moderator)
    response = client.post(QUEUE, {"action": action, "_selected_action": [ok.pk, 999999]}, follow=True)
    page = response.content.decode()
    assert "None of the selected listings is in this list any more: nothing was changed." in page
    assert "these 0" not in page
    assert Decision.objects.filter(object_pk=str(ok.pk)).count() == 1  # its creation only


@pytest.mark.parametrize("path", ["moderation/reject/", "moderation/approve/", "moderation/note/"])
def test_a_get_of_a_decision_url_leads_to_the_listings_page_and_decides_nothing(
    client, moderator, review_catalogue, path
):
    """A user trial: reloading a refused rejection's page (a GET of its URL) showed a bare
    "403 Forbidden", even to a superuser."""
    listing = review_catalogue["mismatch"]
    client.force_login(moderator)
    filters = "_changelist_filters=moderation_status__exact%3Dflagged"
    response = client.get(f"{QUEUE}{listing.pk}/{path}?{filters}")
    assert (response.status_code, response.url) == (302, f"{QUEUE}{listing.pk}/change/?{filters}")
    listing.refresh_from_db()
    assert listing.moderation_status == S.FLAGGED
    assert client.get(f"{QUEUE}{listing.pk}/moderation/bogus/").status_code == 404
    undo = client.get(f"{QUEUE}moderation/undo/?{filters}")  # was a bare 403 too
    assert (undo.status_code, undo.url) == (302, f"{QUEUE}?moderation_status__exact=flagged")


def test_a_bulk_decision_is_refused_for_a_listing_its_seller_edited_after_the_page_showed_it(
    client, moderator, review_catalogue
):
    """A user trial: "Approve this listing: Green desk lamp" was on the screen, the seller
    renamed it "Replica designer lamp" (scored flagged again), and the confirmation
    approved the new title, public at once."""
    from tests.helpers import score_now

    mismatch, duplicate, broken = (review_catalogue[key] for key in ("mismatch", "duplicate", "broken"))
    client.force_login(moderator)
    ids = [mismatch.pk, duplicate.pk, broken.pk]
    asked = client.post(QUEUE, {"action": "approve_selected", "_selected_action": ids}).content.decode()
    shown = dict(re.findall(r'name="(moderation_shown_[^"]+)" value="([^"]*)"', asked))
    assert shown[f"moderation_shown_{mismatch.pk}"] == "flagged:1"
    mismatch.title = "Replica hiking boots"
    mismatch.save()
    score_now(mismatch)  # flagged again, version 2: still in the queue
    broken.title = "Green chair, as new"
    broken.save()  # pending: out of the queue's list
    form = {"action": "approve_selected", "_selected_action": ids, "apply": "1", **shown}
    page = client.post(QUEUE, form, follow=True).content.decode()
    assert "1 approved." in page
    assert "was edited by its owner after the page was opened (version 1, now 2)" in page
    assert "1 of the selected listings is not in this list any more: nothing is done to it." in page
    for listing in (mismatch, duplicate, broken):
        listing.refresh_from_db()
    assert [x.moderation_status for x in (mismatch, duplicate, broken)] == [S.FLAGGED, S.APPROVED, S.PENDING]
    # A confirmation without the page's fields (a forged or an old form) decides nothing.
    forged = client.post(QUEUE, {**form, "_selected_action": [mismatch.pk], **{k: "" for k in shown}}, follow=True)
    assert "was not on the page you confirmed: nothing was decided." in forged.content.decode()


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


# -- the review desk (issue #17) -------------------------------------------------------


@pytest.fixture
def second_moderator(moderator, user_factory):
    """Another moderator with the same permissions."""
    user = user_factory(username="second", is_staff=True)
    user.user_permissions.add(*moderator.user_permissions.all())
    return user


def change_form_html(page: str) -> str:
    """The admin's own change form (``<form ... id="listing_form">`` to its end)."""
    return re.search(r'<form [^>]*id="\w+_form".*?</form>', page, re.S).group(0)


@pytest.mark.parametrize("page", ["/admin/catalog/listing/", QUEUE])
def test_the_decision_controls_are_a_form_of_their_own_outside_the_admins_change_form(
    client, moderator, review_catalogue, page
):
    client.force_login(moderator)
    html = client.get(f"{page}{review_catalogue['mismatch'].pk}/change/").content.decode()
    admin_form = change_form_html(html)
    assert 'id="moderation-decide-form"' in html
    assert "moderation-decide-form" not in admin_form
    assert "/moderation/approve/" not in admin_form
    # The first submit button of the admin's form, the one Enter presses, is Save.
    assert re.search(r'type="submit"[^>]*>', admin_form).group(0).count('name="_save"') == 1


def test_approving_on_the_queues_detail_page_leads_to_the_next_listing_to_review_not_to_an_error(
    client, moderator, review_catalogue
):
    client.force_login(moderator)
    duplicate = review_catalogue["duplicate"]  # the first of the queue: Mug, red
    response = client.post(f"{QUEUE}{duplicate.pk}/moderation/approve/", {"reason": ""}, follow=True)
    assert response.redirect_chain[-1][0] == f"{QUEUE}{review_catalogue['mismatch'].pk}/change/"
    page = response.content.decode()
    assert "Perhaps it was deleted?" not in page  # the admin's message for an object it cannot find
    assert "1 approved." in page
    assert "Red hiking boots" in page
    duplicate.refresh_from_db()
    assert duplicate.moderation_status == S.APPROVED


def test_the_next_listing_keeps_the_lists_filters_and_the_last_decision_returns_to_the_filtered_list(
    client, moderator, review_catalogue
):
    client.force_login(moderator)
    mismatch = review_catalogue["mismatch"]
    filters = "_changelist_filters=flag_reason%3Dtext_image_mismatch"
    detail = client.get(f"{QUEUE}{mismatch.pk}/change/?{filters}").content.decode()
    assert f"/moderation/reject/?{filters}" in detail
    response = client.post(f"{QUEUE}{mismatch.pk}/moderation/reject/?{filters}", {"reason": "wrong photo"})
    assert response.url == f"{QUEUE}?flag_reason=text_image_mismatch"  # the only one of its list
    assert "Nothing else to review" in client.get(response.url).content.decode()


def test_next_and_previous_step_through_the_queue_in_its_order(client, moderator, review_catalogue):
    client.force_login(moderator)
    mug, boots, chair = (review_catalogue[key].pk for key in ("duplicate", "mismatch", "broken"))
    assert client.get(f"{QUEUE}{mug}/moderation/next/").url == f"{QUEUE}{boots}/change/"
    assert client.get(f"{QUEUE}{boots}/moderation/next/").url == f"{QUEUE}{chair}/change/"
    assert client.get(f"{QUEUE}{boots}/moderation/previous/").url == f"{QUEUE}{mug}/change/"
    assert client.get(f"{QUEUE}{chair}/moderation/next/").url == f"{QUEUE}{mug}/change/"  # round again


@pytest.mark.parametrize("page", ["/admin/catalog/listing/", QUEUE])
@pytest.mark.parametrize("reason", ["dark\x00photo", "x" * 2001])
def test_a_reason_the_database_cannot_hold_is_a_form_error_and_nothing_is_decided(
    client, moderator, review_catalogue, page, reason
):
    client.force_login(moderator)
    listing = review_catalogue["mismatch"]
    response = client.post(f"{page}{listing.pk}/moderation/approve/", {"reason": reason})
    assert response.status_code == 200
    assert response.context["form"].errors["reason"]
    assert 'class="errorlist' in response.content.decode()
    listing.refresh_from_db()
    assert listing.moderation_status == S.FLAGGED
    assert not Decision.objects.filter(object_pk=str(listing.pk), actor=moderator).exists()


def test_a_rejection_needs_a_reason_on_the_detail_page_and_in_bulk(client, moderator, review_catalogue):
    client.force_login(moderator)
    listing = review_catalogue["mismatch"]
    response = client.post(f"{QUEUE}{listing.pk}/moderation/reject/", {"reason": "  ", "preset": ""})
    assert response.status_code == 200
    assert "A rejection needs a reason" in response.content.decode()
    bulk = client.post(QUEUE, {"action": "reject_selected", "_selected_action": [listing.pk], "apply": "1"})
    assert "A rejection needs a reason" in bulk.content.decode()
    listing.refresh_from_db()
    assert listing.moderation_status == S.FLAGGED


def test_a_preset_reason_from_settings_and_free_text_are_kept_together(client, moderator, review_catalogue, settings):
    settings.MODERATION = {**settings.MODERATION, "DECISION_REASONS": ["Stock photo"]}
    client.force_login(moderator)
    listing = review_catalogue["mismatch"]
    assert '<option value="Stock photo">' in client.get(f"{QUEUE}{listing.pk}/change/").content.decode()
    client.post(f"{QUEUE}{listing.pk}/moderation/reject/", {"preset": "Stock photo", "reason": "from a catalogue"})
    assert transitions_history_reasons(listing)[0] == "Stock photo: from a catalogue"
    refused = client.post(f"/admin/catalog/listing/{listing.pk}/moderation/approve/", {"preset": "Not a preset"})
    assert refused.context["form"].errors["preset"]


def transitions_history_reasons(obj) -> list[str]:
    return list(Decision.objects.filter(object_pk=str(obj.pk)).values_list("reason", flat=True))


def test_the_queues_count_line_is_pluralised(client, moderator, review_catalogue):
    client.force_login(moderator)
    page = client.get(QUEUE).content.decode()
    assert re.search(r"3\s+listings to review", page)
    assert "review queue" not in page
    one = client.get(f"{QUEUE}?flag_reason=duplicate_image").content.decode()
    assert re.search(r"1\s+listing to review", one)


def test_the_queues_status_filter_offers_only_the_statuses_the_queue_can_hold(client, moderator, review_catalogue):
    client.force_login(moderator)
    queue = client.get(QUEUE).content.decode()
    offered = set(re.findall(r'href="\?moderation_status=(\w+)"', queue))
    assert offered == {"flagged", "error"}
    listings = client.get("/admin/catalog/listing/").content.decode()
    assert set(re.findall(r'href="\?moderation_status=(\w+)"', listings)) == {"review", *S.values}


def test_decision_log_rows_link_to_their_object(client, moderator, review_catalogue):
    client.force_login(moderator)
    listing = review_catalogue["mismatch"]
    page = client.get(f"/admin/moderation/decision/?q={listing.pk}").content.decode()
    assert f'<a href="{listing_url(listing)}">{listing.pk}</a>' in page


def test_the_lists_show_a_small_generated_thumbnail_never_the_original(client, moderator, review_catalogue):
    from django.core.files.storage import default_storage
    from PIL import Image

    client.force_login(moderator)
    page = client.get(QUEUE).content.decode()
    sources = re.findall(r'<img class="moderation-thumbnail" src="([^"]+)"', page)
    assert len(sources) == 2  # the broken photo has none
    originals = {review_catalogue[key].image.url for key in ("mismatch", "duplicate")}
    assert not originals & set(sources)
    for source in sources:
        with default_storage.open(source.split(default_storage.base_url, 1)[1]) as thumbnail:
            assert Image.open(thumbnail).size == (56, 56)


def test_a_second_moderator_sees_who_holds_a_listing_and_next_skips_it(
    client, moderator, second_moderator, review_catalogue
):
    mug, boots, chair = (review_catalogue[key] for key in ("duplicate", "mismatch", "broken"))
    client.force_login(moderator)
    client.get(f"{QUEUE}{boots.pk}/change/")  # opened: held by the first moderator
    client.force_login(second_moderator)
    assert "moderator is reviewing this until" in client.get(f"{QUEUE}{boots.pk}/change/").content.decode()
    assert '<span class="moderation-held">held by moderator</span>' in client.get(QUEUE).content.decode()
    assert client.get(f"{QUEUE}{mug.pk}/moderation/next/").url == f"{QUEUE}{chair.pk}/change/"
    response = client.post(f"{QUEUE}{mug.pk}/moderation/approve/", {"reason": ""})
    assert response.url == f"{QUEUE}{chair.pk}/change/"


def test_a_moderator_who_opens_listings_one_after_another_from_the_list_holds_only_the_last(
    client, moderator, second_moderator, review_catalogue
):
    """A user trial: opening listings from the list (and going back) left every one held,
    so another moderator's "next" skipped them all for five minutes."""
    mug, boots = review_catalogue["duplicate"], review_catalogue["mismatch"]
    client.force_login(moderator)
    client.get(f"{QUEUE}{boots.pk}/change/")
    client.get(QUEUE)  # back to the list
    client.get(f"{QUEUE}{mug.pk}/change/")
    client.force_login(second_moderator)
    assert client.get(QUEUE).content.decode().count('<span class="moderation-held">held by moderator</span>') == 1
    assert "moderator is reviewing this until" not in client.get(f"{QUEUE}{boots.pk}/change/").content.decode()
    assert "moderator is reviewing this until" in client.get(f"{QUEUE}{mug.pk}/change/").content.decode()


def test_the_queue_shows_the_seller_and_offers_no_select_of_every_user(client, moderator, review_catalogue):
    """A user trial: the queue's change page offered a select of every user (admins and
    moderators too) for the seller, one stray choice from handing the listing to another."""
    listing = review_catalogue["mismatch"]
    seller = listing.seller
    client.force_login(moderator)
    page = client.get(f"{QUEUE}{listing.pk}/change/").content.decode()
    assert 'name="seller"' not in page
    assert seller.username in page
    form = {"title": "Red hiking boots", "description": "", "category": listing.category_id, "price": "10.00"}
    form["seller"] = moderator.pk  # a forged field is ignored
    assert client.post(f"{QUEUE}{listing.pk}/change/", form).status_code == 302
    listing.refresh_from_db()
    assert listing.seller == seller


def test_a_decision_ends_the_moderators_hold(client, moderator, second_moderator, review_catalogue):
    mug, boots = review_catalogue["duplicate"], review_catalogue["mismatch"]
    client.force_login(moderator)
    client.get(f"/admin/catalog/listing/{boots.pk}/change/")
    client.post(f"/admin/catalog/listing/{boots.pk}/moderation/rescan/", {})
    client.force_login(second_moderator)
    assert client.get(f"{QUEUE}{mug.pk}/moderation/next/").url == f"{QUEUE}{boots.pk}/change/"


def test_undo_after_a_decision_on_the_detail_page_returns_the_listing_to_the_queue(client, moderator, review_catalogue):
    client.force_login(moderator)
    mug = review_catalogue["duplicate"]
    next_page = client.post(f"{QUEUE}{mug.pk}/moderation/approve/", {"reason": ""}, follow=True).content.decode()
    assert 'id="moderation-undo-form"' in next_page
    assert "You approved 1 listing: &ldquo;<bdi>Mug, red</bdi>&rdquo;" in next_page
    response = client.post(f"{QUEUE}moderation/undo/")
    assert response.url == f"{QUEUE}{mug.pk}/change/"
    mug.refresh_from_db()
    assert mug.moderation_status == S.FLAGGED
    assert Decision.objects.filter(object_pk=str(mug.pk), reason="undo", actor=moderator).exists()
    assert client.post(f"{QUEUE}moderation/undo/").status_code == 404  # once


def test_undo_after_a_bulk_action_restores_every_listing(client, moderator, review_catalogue):
    client.force_login(moderator)
    chosen = [review_catalogue["mismatch"], review_catalogue["duplicate"]]
    confirm(client, QUEUE, "reject_selected", [o.pk for o in chosen], reason="stock")
    assert "You rejected 2 listings" in client.get(QUEUE).content.decode()
    done = client.post(f"{QUEUE}moderation/undo/", follow=True)
    assert "2 decisions undone." in done.content.decode()
    for listing in chosen:
        listing.refresh_from_db()
        assert listing.moderation_status == S.FLAGGED


def test_the_undo_offer_ends_after_undo_seconds(client, moderator, review_catalogue, settings):
    settings.MODERATION = {**settings.MODERATION, "UNDO_SECONDS": 0}
    client.force_login(moderator)
    mug = review_catalogue["duplicate"]
    client.post(f"{QUEUE}{mug.pk}/moderation/approve/", {"reason": ""})
    assert 'id="moderation-undo-form"' not in client.get(QUEUE).content.decode()
    client.post(f"{QUEUE}moderation/undo/")
    mug.refresh_from_db()
    assert mug.moderation_status == S.APPROVED


def test_a_note_is_kept_with_the_history_and_a_note_the_database_cannot_hold_is_refused(
    client, moderator, review_catalogue
):
    from moderation.models import Note

    client.force_login(moderator)
    boots = review_catalogue["mismatch"]
    client.post(f"{QUEUE}{boots.pk}/moderation/note/", {"text": "Asked the seller for a better photo"})
    page = client.get(f"{QUEUE}{boots.pk}/change/").content.decode()
    assert re.search(r'<tr class="moderation-note">.*?Asked the seller for a better photo', page, re.S)
    refused = client.post(f"{QUEUE}{boots.pk}/moderation/note/", {"text": "a\x00b"}, follow=True)
    assert "The note was not kept" in refused.content.decode()
    assert Note.objects.count() == 1


def test_the_detail_page_shows_each_score_beside_its_threshold_and_model(client, moderator, review_catalogue):
    client.force_login(moderator)
    boots = review_catalogue["mismatch"]
    assert boots.moderation_thresholds["CONSISTENCY_MIN"] == 0.5
    page = client.get(listing_url(boots)).content.decode()
    assert f"{boots.consistency_score:.2f} (threshold 0.50, model demo:colour-words-v1)" in page
    decision = Decision.objects.filter(object_pk=str(boots.pk), to_status=S.FLAGGED).get()
    assert decision.scores["thresholds"]["CONSISTENCY_MIN"] == 0.5
    assert decision.scores["model_id"] == "demo:colour-words-v1"


def test_a_duplicate_shows_both_sellers_their_upload_dates_which_came_first_and_the_others_status(
    client, moderator, review_catalogue
):
    client.force_login(moderator)
    page = client.get(listing_url(review_catalogue["duplicate"])).content.decode()
    side = re.search(r'id="moderation-duplicate".*?</div>', page, re.S).group(0)
    assert '<span class="moderation-status ok">OK</span>' in side  # the other listing's status
    rows = re.findall(r"<tr(?: class=\"moderation-first\")?><td>(this|the other)</td>\s*<td>(\w+)</td>", side)
    assert rows == [("this", "bob"), ("the other", "alice")]
    assert re.search(r'<tr class="moderation-first"><td>the other</td>.*?\(first\)', side, re.S)


def test_the_sellers_record_counts_their_other_troubled_listings_and_the_decisions_on_theirs(
    client, moderator, review_catalogue
):
    from moderation import transitions

    client.force_login(moderator)
    transitions.reject(review_catalogue["ok"], actor=moderator, reason="stock photo")  # alice's other listing
    page = client.get(listing_url(review_catalogue["mismatch"])).content.decode()
    record = re.search(r'id="moderation-record">(.*?)</ul>', page, re.S).group(1)
    assert "1 decision by moderators" in record
    assert "Rejected: 1" in record
    assert "Red ceramic mug" in record


def test_each_categorys_agreement_histogram_has_its_own_scale(
    client, moderator, review_catalogue, listing_factory, category_factory, photo
):
    from tests.helpers import score_now

    # Kitchen holds 2 scored listings, Clothing 1: its one bar is as tall as Kitchen's tallest.
    score_now(listing_factory(title="Blue coat", image=photo("blue", "shoe"), category=category_factory("Clothing")))
    client.force_login(moderator)
    page = client.get("/admin/moderation/decision/dashboard/").content.decode()
    for category in ("Clothing", "Kitchen"):
        chart = re.search(rf"<strong>{category}</strong>.*?</svg>", page, re.S).group(0)
        heights = [int(h) for h in re.findall(r'<rect y="-\d+" width="18" height="(\d+)"', chart)]
        assert max(heights) == 60, category


def test_the_dashboard_shows_how_long_the_queue_has_waited(client, moderator, review_catalogue):
    from datetime import timedelta

    from django.utils import timezone

    Decision.objects.filter(object_pk=str(review_catalogue["duplicate"].pk), to_status=S.FLAGGED).update(
        created_at=timezone.now() - timedelta(hours=3)
    )
    client.force_login(moderator)
    page = client.get("/admin/moderation/decision/dashboard/").content.decode()
    assert re.search(r'id="waiting-count">3<', page)
    assert re.search(r'id="waiting-oldest">3\xa0hours<', page)
    assert re.search(r'id="waiting-median">0\xa0minutes<', page)


def test_the_dashboard_counts_decisions_per_moderator_per_day(client, moderator, second_moderator, review_catalogue):
    from moderation import transitions

    transitions.approve(review_catalogue["mismatch"], actor=moderator)
    transitions.reject(review_catalogue["duplicate"], actor=moderator, reason="copy")
    transitions.approve(review_catalogue["ok"], actor=second_moderator)
    client.force_login(moderator)
    page = client.get("/admin/moderation/decision/dashboard/").content.decode()
    assert re.search(r'data-moderator="moderator">2<', page)
    assert re.search(r'data-moderator="second">1<', page)


def test_the_dashboard_gives_the_embedders_account_with_a_projected_monthly_cost(client, moderator, review_catalogue):
    client.force_login(moderator)
    page = client.get("/admin/moderation/decision/dashboard/").content.decode()
    account = re.search(r'id="embedder-account">.*?</table>', page, re.S).group(0)
    assert "demo:colour-words-v1" in account
    assert re.search(r'id="projected-monthly-cost">0\.00<', account)


def test_stepping_on_to_the_next_listing_ends_the_hold_on_the_one_left(
    client, moderator, second_moderator, review_catalogue
):
    mug, boots = review_catalogue["duplicate"], review_catalogue["mismatch"]
    client.force_login(moderator)
    client.get(f"{QUEUE}{mug.pk}/change/")
    client.get(f"{QUEUE}{mug.pk}/moderation/next/")
    client.force_login(second_moderator)
    assert "is reviewing this" not in client.get(f"{QUEUE}{mug.pk}/change/").content.decode()
    assert client.get(f"{QUEUE}{boots.pk}/moderation/previous/").url == f"{QUEUE}{mug.pk}/change/"


def test_the_moderators_group_command_gives_a_staff_user_exactly_what_the_review_desk_needs(
    client, user_factory, review_catalogue
):
    from django.contrib.auth.models import Group
    from django.core.management import call_command

    call_command("moderation_moderators_group")
    call_command("moderation_moderators_group")  # again: updated, not doubled
    group = Group.objects.get(name="Moderators")
    assert {f"{p.content_type.app_label}.{p.codename}" for p in group.permissions.all()} == {
        "catalog.view_listing",
        "catalog.change_listing",
        "catalog.view_listingreview",
        "catalog.change_listingreview",
        "testapp.view_gadget",
        "testapp.change_gadget",
        "moderation.view_decision",
        "moderation.moderate",
    }
    user = user_factory(username="newcomer", is_staff=True)
    user.groups.add(group)
    client.force_login(user)
    boots = review_catalogue["mismatch"]
    assert client.get(f"{QUEUE}{boots.pk}/change/").status_code == 200
    client.post(f"{QUEUE}{boots.pk}/moderation/approve/", {"reason": ""})
    boots.refresh_from_db()
    assert boots.moderation_status == S.APPROVED


# -- issue #17 follow-up: two moderators on one listing ---------------------------------


def decide_form(page: str) -> dict:
    """The hidden fields of the review panel's decision form, as the browser posts them."""
    form = re.search(r'<form [^>]*id="moderation-decide-form".*?</form>', page, re.S).group(0)
    return dict(re.findall(r'<input type="hidden" name="(shown_\w+)" value="([^"]*)"', form))


def test_a_decision_on_a_page_decided_since_it_was_opened_is_refused_naming_who_decided_and_shows_it_now(
    client, moderator, second_moderator, review_catalogue
):
    boots = review_catalogue["mismatch"]
    client.force_login(moderator)
    mira_sees = decide_form(client.get(f"{QUEUE}{boots.pk}/change/").content.decode())
    client.force_login(second_moderator)
    nils_sees = decide_form(client.get(f"{QUEUE}{boots.pk}/change/").content.decode())
    assert nils_sees == {"shown_status": "flagged", "shown_version": str(boots.moderation_version)}
    client.force_login(moderator)
    client.post(f"{QUEUE}{boots.pk}/moderation/approve/", {"reason": "", **mira_sees})
    client.force_login(second_moderator)
    response = client.post(f"{QUEUE}{boots.pk}/moderation/reject/", {"reason": "wrong photo", **nils_sees}, follow=True)
    assert response.status_code == 200
    assert response.redirect_chain[-1][0] == f"{QUEUE}{boots.pk}/change/"
    page = response.content.decode()
    assert "was approved by moderator at" in page
    assert '<span class="moderation-status approved">Approved</span>' in page  # the page shows it as it is now
    boots.refresh_from_db()
    assert boots.moderation_status == S.APPROVED
    assert not Decision.objects.filter(object_pk=str(boots.pk), to_status=S.REJECTED).exists()


def test_a_decision_on_a_page_whose_listing_its_seller_edited_since_says_it_was_edited(
    client, moderator, review_catalogue
):
    """A user trial: the refusal said "... was flagged by the system at ...", which hid that
    the seller had changed the listing."""
    from tests.helpers import score_now

    boots = review_catalogue["mismatch"]
    client.force_login(moderator)
    seen = decide_form(client.get(f"{QUEUE}{boots.pk}/change/").content.decode())
    boots.title = "Red hiking boots, size 42"
    boots.save()
    score_now(boots)  # flagged again, by the system
    response = client.post(f"{QUEUE}{boots.pk}/moderation/approve/", {"reason": "", **seen}, follow=True)
    page = response.content.decode()
    assert "was edited by its owner after the page was opened (version 1, now 2): nothing was decided." in page
    boots.refresh_from_db()
    assert boots.moderation_status == S.FLAGGED


def test_an_edit_saved_from_the_queue_after_another_moderator_decided_is_kept(
    client, moderator, second_moderator, review_catalogue
):
    boots = review_catalogue["mismatch"]
    client.force_login(second_moderator)
    client.get(f"{QUEUE}{boots.pk}/change/")
    client.force_login(moderator)
    client.post(f"{QUEUE}{boots.pk}/moderation/approve/", {"reason": ""})
    client.force_login(second_moderator)
    form = {"seller": boots.seller_id, "title": boots.title, "category": boots.category_id or "", "price": "12.00"}
    response = client.post(f"{QUEUE}{boots.pk}/change/", form, follow=True)
    assert "Perhaps it was deleted?" not in response.content.decode()
    boots.refresh_from_db()
    assert str(boots.price) == "12.00"
    assert client.get(f"{QUEUE}{boots.pk}/change/").status_code == 200
    assert f"{QUEUE}{boots.pk}/change/" not in client.get(QUEUE).content.decode()  # the list: what needs review


def test_the_duplicate_panel_says_who_uploaded_first_in_the_duplicate_checks_order_after_a_text_edit(
    client, moderator, review_catalogue
):
    """A text-only edit of the original sends it to pending; it is still the first upload."""
    original, copy = review_catalogue["ok"], review_catalogue["duplicate"]
    original.title = "Red ceramic mug, large"
    original.save()
    assert Decision.objects.filter(object_pk=str(original.pk), reason="content changed").exists()
    client.force_login(moderator)
    page = client.get(listing_url(copy)).content.decode()
    side = re.search(r'id="moderation-duplicate".*?</div>', page, re.S).group(0)
    assert re.search(r'<tr class="moderation-first"><td>the other</td>.*?\(first\)', side, re.S)
    assert "<td>this</td>" in side
    assert side.count("(first)") == 1


def test_undo_keeps_the_lists_filters(client, moderator, review_catalogue):
    client.force_login(moderator)
    mug = review_catalogue["duplicate"]
    filters = "_changelist_filters=flag_reason%3Dduplicate_image"
    listing = client.post(f"{QUEUE}{mug.pk}/moderation/approve/?{filters}", {"reason": ""}, follow=True)
    assert listing.redirect_chain[-1][0] == f"{QUEUE}?flag_reason=duplicate_image"
    action = re.search(r'action="([^"]+)" class="moderation-undo"', listing.content.decode()).group(1)
    assert action == f"{QUEUE}moderation/undo/?{filters}"
    assert client.post(action).url == f"{QUEUE}{mug.pk}/change/?{filters}"


@pytest.mark.parametrize(
    ("since", "refusal"),
    [
        ("someone else decided", "second rejected it after your decision"),
        ("the seller edited", "its content changed after your decision"),
        ("too old", "your decision is older than 120 seconds"),
    ],
)
def test_a_refused_undo_says_why(client, moderator, second_moderator, review_catalogue, since, refusal):
    from datetime import timedelta

    from moderation import transitions

    client.force_login(moderator)
    mug = review_catalogue["duplicate"]
    client.post(f"{QUEUE}{mug.pk}/moderation/approve/", {"reason": ""})
    mug.refresh_from_db()
    if since == "someone else decided":
        transitions.reject(mug, actor=second_moderator, reason="stock photo")
    elif since == "the seller edited":
        mug.title = "Mug, dark red"
        mug.save()
    else:
        Decision.objects.filter(object_pk=str(mug.pk)).update(created_at=F("created_at") - timedelta(seconds=121))
    page = client.post(f"{QUEUE}moderation/undo/", follow=True).content.decode()
    assert f"Mug, red was not undone: {refusal}." in page.replace("Mug, dark red", "Mug, red")
    assert "there is no recent decision of yours" not in page


def test_the_undo_bar_hides_itself_when_undo_seconds_are_up(client, moderator, review_catalogue):
    client.force_login(moderator)
    mug = review_catalogue["duplicate"]
    page = client.post(f"{QUEUE}{mug.pk}/moderation/approve/", {"reason": ""}, follow=True).content.decode()
    bar = re.search(r'<form [^>]*class="moderation-undo"[^>]*>', page).group(0)
    assert re.search(r'data-moderation-until="\d+"', bar)  # review.js removes the bar at that time (ms)


def test_a_decision_by_anyone_ends_every_hold_on_the_listing(client, moderator, second_moderator, review_catalogue):
    from moderation.models import ReviewHold

    boots = review_catalogue["mismatch"]
    client.force_login(moderator)
    client.get(f"{QUEUE}{boots.pk}/change/")  # mira holds it
    client.force_login(second_moderator)
    client.post(f"/admin/catalog/listing/{boots.pk}/moderation/approve/", {"reason": ""})
    assert not ReviewHold.objects.filter(object_pk=str(boots.pk)).exists()


def test_the_last_decision_in_a_list_says_how_many_are_left_held_by_whom(
    client, moderator, second_moderator, review_catalogue, user_factory
):
    mug, boots, chair = (review_catalogue[key] for key in ("duplicate", "mismatch", "broken"))
    third = user_factory(username="third", is_staff=True)
    third.user_permissions.add(*moderator.user_permissions.all())
    for holder, listing in ((second_moderator, mug), (third, chair)):  # a moderator holds one at a time
        client.force_login(holder)
        client.get(f"{QUEUE}{listing.pk}/change/")
    client.force_login(moderator)
    page = client.post(f"{QUEUE}{boots.pk}/moderation/approve/", {"reason": ""}, follow=True).content.decode()
    assert "Nothing else to review in this list: 2 more are held by second, third." in page


def test_the_desk_says_listings_not_objects_and_the_history_shows_status_labels(client, moderator, review_catalogue):
    client.force_login(moderator)
    chosen = [review_catalogue["mismatch"], review_catalogue["duplicate"], review_catalogue["broken"]]
    ask = client.post(QUEUE, {"action": "reject_selected", "_selected_action": [o.pk for o in chosen]})
    assert "Reject these 3 listings:" in ask.content.decode()
    mug = review_catalogue["duplicate"]
    page = client.post(f"{QUEUE}{mug.pk}/moderation/approve/", {"reason": ""}, follow=True).content.decode()
    assert "You approved 1 listing: &ldquo;<bdi>Mug, red</bdi>&rdquo;" in page
    history = re.search(r'id="moderation-history".*?</table>', client.get(listing_url(mug)).content.decode(), re.S)
    assert "Flagged &rarr; Approved" in history.group(0)
    assert "flagged &rarr; approved" not in history.group(0)


@pytest.mark.parametrize("decided", [False, True])
def test_a_rescan_whose_photo_is_gone_ends_in_a_named_state_and_leaves_nothing_in_flight(
    client, moderator, review_catalogue, decided
):
    """A user trial: a rescan from the queue of a flagged listing whose photo file was
    deleted changed nothing, said nothing, and stayed queued for good (``manage.py demo``
    then waited its full 180 s for it)."""
    from django.core.files.storage import default_storage
    from django.db.models import F, Q

    from catalog.models import Listing
    from moderation import transitions
    from tests.helpers import score_now

    listing = review_catalogue["mismatch"]
    if decided:
        transitions.approve(listing, actor=moderator)
    default_storage.delete(listing.image.name)
    client.force_login(moderator)
    assert client.post(f"{QUEUE}{listing.pk}/moderation/rescan/", {}).status_code == 302
    score_now(listing, force=True)
    expected = S.APPROVED if decided else S.ERROR
    assert (listing.moderation_status, listing.moderation_error) == (expected, "image_missing")
    assert (listing.moderation_started_at, listing.moderation_queued_at, listing.moderation_attempts) == (None, None, 1)
    waiting = Q(moderation_status=S.PENDING) | Q(moderation_queued_at__gt=F("moderated_at"))  # what the demo waits on
    assert not Listing.objects.filter(waiting, pk=listing.pk).exists()
    page = client.get(f"/admin/catalog/listing/{listing.pk}/change/").content.decode()
    if decided:
        assert "The last rescan failed (image_missing)" in page
        assert listing.flag_reasons == ["text_image_mismatch"]  # the earlier scores stay
    else:
        assert "Could not be scored (image_missing, 1 attempt)" in page
