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
