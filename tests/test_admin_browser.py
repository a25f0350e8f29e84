"""The review queue in a real headless Chromium: log in, open the queue, open a
flagged listing, bulk-reject two listings. Screenshots go to test-artifacts/."""

import os
import shutil
from pathlib import Path

import pytest

from moderation.models import ModerationStatus
from tests.helpers import ROOT

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARTIFACTS = ROOT / "test-artifacts"
pytestmark = [
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not CHROMIUM, reason="Debian's chromium is not installed (make test installs it as root)"),
]


@pytest.fixture
def browser_page():
    os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")  # playwright's sync API runs an event loop
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        yield page
        browser.close()


def shot(page, name: str) -> Path:
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def test_a_moderator_logs_in_reviews_and_bulk_rejects_in_the_browser(
    live_server, browser_page, moderator, review_catalogue
):
    page = browser_page
    moderator.set_password("browser-pass")
    moderator.save()

    page.goto(f"{live_server.url}/admin/login/?next=/admin/catalog/listingreview/")
    page.fill("#id_username", "moderator")
    page.fill("#id_password", "browser-pass")
    page.click("input[type=submit]")
    page.wait_for_selector("#result_list")
    titles = page.locator("#result_list th.field-title a").all_inner_texts()
    assert titles == ["Mug, red", "Red hiking boots", "Green chair"]
    assert shot(page, "queue").stat().st_size > 10_000

    page.click("text=Red hiking boots")
    page.wait_for_selector("#moderation-review")
    assert "below the threshold" in page.inner_text("#moderation-review")
    assert page.locator("#moderation-photo").evaluate("img => img.naturalWidth") > 0  # the photo really loads
    shot(page, "detail")

    page.goto(f"{live_server.url}/admin/catalog/listingreview/")
    for title in ("Mug, red", "Red hiking boots"):
        page.locator("#result_list tr", has_text=title).locator("input.action-select").check()
    page.select_option("select[name=action]", "reject_selected")
    page.click("button[name=index]")
    page.wait_for_selector("#moderation-decide-selected")
    page.fill("textarea[name=reason]", "photos do not match")
    page.click("#moderation-decide-selected input[type=submit]")
    page.wait_for_selector("ul.messagelist")
    assert "2 rejected." in page.inner_text("ul.messagelist")
    shot(page, "after-bulk-reject")

    for key in ("mismatch", "duplicate"):
        review_catalogue[key].refresh_from_db()
        assert review_catalogue[key].moderation_status == ModerationStatus.REJECTED
    assert page.locator("#result_list th.field-title a").all_inner_texts() == ["Green chair"]

    page.goto(f"{live_server.url}/admin/moderation/decision/dashboard/")
    page.wait_for_selector("svg.mod-chart")
    shot(page, "dashboard")


# -- the review desk (issue #17) -------------------------------------------------------

QUEUE = "/admin/catalog/listingreview/"


def log_in(page, live_server, user, password="browser-pass"):
    user.set_password(password)
    user.save()
    page.goto(f"{live_server.url}/admin/login/?next={QUEUE}")
    page.fill("#id_username", user.username)
    page.fill("#id_password", password)
    page.click("input[type=submit]")
    page.wait_for_selector("#result_list")


@pytest.fixture
def flagged_listings(demo_moderation, listing_factory, photo):
    """Listings whose title names red and whose photo is blue: flagged, in the queue."""
    from tests.helpers import score_now

    def make(count: int):
        listings = []
        for i in range(count):
            listing = listing_factory(title=f"Red item {i:02d}", image=photo("blue", "shoe", seed=f"item-{i}"))
            score_now(listing)
            assert listing.moderation_status == ModerationStatus.FLAGGED
            listings.append(listing)
        return listings

    return make


def decisions_by(user) -> int:
    from moderation.models import Decision

    return Decision.objects.filter(actor=user).count()


def press(page, key: str) -> None:
    """A shortcut that leads to another page: press it and wait for that page."""
    with page.expect_navigation():
        page.keyboard.press(key)


def test_pressing_enter_in_any_field_of_a_flagged_listings_change_page_saves_and_decides_nothing(
    live_server, browser_page, moderator, flagged_listings
):
    page = browser_page
    (listing,) = flagged_listings(1)
    log_in(page, live_server, moderator)
    url = f"{live_server.url}{QUEUE}{listing.pk}/change/"
    page.goto(url)
    # Every field a moderator can type Enter into (a textarea takes Enter as a new line).
    fields_js = """Array.from(document.querySelectorAll("input, select"))
        .filter(e => !["hidden", "file", "submit", "button"].includes(e.type))"""
    fields = page.evaluate(
        f"() => {fields_js}.map((e, i) => [i, e.name || e.id, e.tagName === 'INPUT' && !!e.closest('form[id$=_form]')])"
    )
    assert len(fields) >= 5  # the admin form's fields, the decision's reason, the sidebar's filter
    assert sum(in_admin_form for _i, _name, in_admin_form in fields) >= 2  # title, price
    assert any(name == "preset" for _i, name, _admin in fields)
    # in_admin_form: an input of the admin's form, where Enter submits it (a select's Enter does not).
    for number, (index, name, in_admin_form) in enumerate(fields):
        price = f"{10 + number}.25"
        page.goto(url)
        page.fill("#id_price", price)
        page.evaluate(f"() => {fields_js}[{index}].focus()")
        if in_admin_form:  # Enter submits the admin's form: Save
            press(page, "Enter")
        else:
            page.keyboard.press("Enter")
            page.wait_for_timeout(500)
            assert page.url == url, name
        listing.refresh_from_db()
        assert listing.moderation_status == ModerationStatus.FLAGGED, name
        assert decisions_by(moderator) == 0, name
        if in_admin_form:
            assert str(listing.price) == price, name  # the edit was saved
    shot(page, "enter-in-every-field")


def test_a_moderator_reviews_twenty_flagged_listings_in_a_row_with_the_keyboard_alone(
    live_server, browser_page, moderator, flagged_listings
):
    page = browser_page
    listings = flagged_listings(20)
    log_in(page, live_server, moderator)
    press(page, "n")  # the first of the queue
    seen = []
    for number in range(20):
        page.wait_for_selector("#moderation-review")
        title = page.locator("#moderation-review .text p").first.inner_text()
        seen.append(title)
        if number == 0:
            shot(page, "review-desk-detail")
        if number % 2:  # reject: r moves to the reasons, a reason is picked, Enter decides
            page.keyboard.press("r")
            assert page.evaluate("document.activeElement.name") == "preset"
            page.keyboard.press("ArrowDown")
            press(page, "Enter")
        else:
            press(page, "a")
        assert "Perhaps it was deleted?" not in page.content()
        assert page.locator("ul.messagelist .success").count() == 1
    assert page.url.startswith(f"{live_server.url}{QUEUE}")
    assert "Nothing else to review in this list." in page.inner_text("ul.messagelist")
    shot(page, "review-desk-done")
    assert len(set(seen)) == 20
    statuses = {}
    for listing in listings:
        listing.refresh_from_db()
        statuses[listing.moderation_status] = statuses.get(listing.moderation_status, 0) + 1
    assert statuses == {ModerationStatus.APPROVED: 10, ModerationStatus.REJECTED: 10}


def test_the_shortcuts_next_previous_photo_rescan_and_undo(live_server, browser_page, moderator, flagged_listings):
    page = browser_page
    first, second, third = flagged_listings(3)
    log_in(page, live_server, moderator)
    press(page, "n")
    start = page.url
    press(page, "n")
    assert page.url != start
    press(page, "p")
    assert page.url == start

    page.keyboard.press("o")  # the photo at full size, in a dialog; a click zooms
    dialog = page.locator("#moderation-photo-dialog")
    assert dialog.is_visible()
    assert dialog.locator("img").evaluate("img => img.naturalWidth") > 0
    dialog.locator("img").click()
    assert "zoomed" in dialog.get_attribute("class")
    shot(page, "photo-zoomed")
    page.keyboard.press("Escape")
    assert not dialog.is_visible()

    current = page.url
    press(page, "a")
    assert page.url != current
    press(page, "u")  # undo: back to the listing, flagged again
    assert page.url == current
    assert "1 decision undone." in page.inner_text("ul.messagelist")
    assert {listing.refresh_from_db() or listing.moderation_status for listing in (first, second, third)} == {
        ModerationStatus.FLAGGED
    }

    press(page, "s")  # rescan, and on to the next
    assert "1 queued for scoring." in page.inner_text("ul.messagelist")
    assert page.url != current


def test_a_second_moderator_sees_the_hold_and_next_skips_the_held_listing(
    live_server, browser_page, moderator, flagged_listings, user_factory
):
    first_page = browser_page
    listings = flagged_listings(3)
    other = user_factory(username="second", is_staff=True)
    other.user_permissions.add(*moderator.user_permissions.all())
    log_in(first_page, live_server, moderator)
    press(first_page, "n")
    press(first_page, "n")  # the first moderator now holds the second listing of the queue
    held_url = first_page.url

    second_page = first_page.context.browser.new_page(viewport={"width": 1280, "height": 900})
    log_in(second_page, live_server, other)
    assert second_page.locator("#result_list .moderation-held").inner_text() == "held by moderator"
    shot(second_page, "hold-in-queue")
    second_page.goto(held_url)
    assert "moderator is reviewing this until" in second_page.inner_text("#moderation-held")
    shot(second_page, "hold-on-detail")
    second_page.goto(f"{live_server.url}{QUEUE}")
    press(second_page, "n")
    first_url = second_page.url
    press(second_page, "n")
    assert second_page.url not in (first_url, held_url)  # the held one is skipped
    assert len(listings) == 3


# -- issue #17 follow-up -----------------------------------------------------------------


def test_a_long_word_in_a_note_and_a_reason_wraps_inside_the_page(
    live_server, browser_page, moderator, flagged_listings
):
    from moderation import notes, transitions

    page = browser_page
    (listing,) = flagged_listings(1)
    log_in(page, live_server, moderator)
    notes.add_note(listing, author=moderator, text="n" * 2000)
    transitions.approve(listing, actor=moderator, reason="r" * 2000)
    page.goto(f"{live_server.url}{QUEUE}{listing.pk}/change/")
    page.wait_for_selector("#moderation-history")
    assert page.evaluate("document.documentElement.scrollWidth") <= 1280  # was 15,953 px
    shot(page, "long-note")


def test_a_title_of_one_long_word_wraps_in_the_lists_heading_and_breadcrumbs(
    live_server, browser_page, moderator, flagged_listings
):
    """A user trial: "Red " and a 192-character word made the change page 2,324 px wide,
    and the Listings list pushed category, seller and status off the screen."""
    page = browser_page
    listing, neighbour = flagged_listings(2)  # one seller's: the other's page shows it in the record
    type(listing).objects.filter(pk=listing.pk).update(title="Red " + "x" * 192)
    log_in(page, live_server, moderator)
    paths = (f"{QUEUE}{listing.pk}/change/", "/admin/catalog/listing/", QUEUE, f"{QUEUE}{neighbour.pk}/change/")
    for path in paths:
        page.goto(f"{live_server.url}{path}")
        assert page.evaluate("document.documentElement.scrollWidth") <= 1280, path
    # The bulk actions' page and, after the decision, the undo bar name it too.
    page.goto(f"{live_server.url}{QUEUE}")
    page.check(f'input[name="_selected_action"][value="{listing.pk}"]')
    page.select_option('select[name="action"]', "approve_selected")
    page.click('button[name="index"]')
    page.wait_for_selector("#moderation-decide-selected")
    assert page.evaluate("document.documentElement.scrollWidth") <= 1280, "bulk approve"
    page.click('#moderation-decide-selected input[type="submit"]')
    page.wait_for_selector("#moderation-undo-form")
    assert page.evaluate("document.documentElement.scrollWidth") <= 1280, "undo bar"
    shot(page, "long-title-queue")


def test_the_open_photo_zooms_with_z_plus_and_minus_and_upper_case_keys_work(
    live_server, browser_page, moderator, flagged_listings
):
    page = browser_page
    listings = {str(listing.pk): listing for listing in flagged_listings(2)}
    log_in(page, live_server, moderator)
    press(page, "N")  # Caps Lock on: the first listing of the queue
    opened = listings[page.url.split(QUEUE)[1].split("/")[0]]
    page.keyboard.press("O")
    dialog = page.locator("#moderation-photo-dialog")
    assert dialog.is_visible()
    for key, zoomed in (("z", True), ("-", False), ("+", True), ("Z", False)):
        page.keyboard.press(key)
        assert ("zoomed" in (dialog.get_attribute("class") or "")) is zoomed, key
    page.keyboard.press("Escape")
    press(page, "A")
    opened.refresh_from_db()
    assert opened.moderation_status == ModerationStatus.APPROVED
