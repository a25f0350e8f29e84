"""Take the screenshots in docs/screenshots/ from a running demo (`make demo`).

.venv/bin/python docs/screenshots.py [http://127.0.0.1:8000]
"""

import os
import shutil
import sys
from pathlib import Path

from playwright.sync_api import sync_playwright

BASE = sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:8000"
OUT = Path(__file__).resolve().parent / "screenshots"


def main() -> None:
    OUT.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=shutil.which("chromium"),
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"],
        )
        page = browser.new_page(viewport={"width": 1280, "height": 860})
        page.goto(f"{BASE}/admin/login/?next=/admin/catalog/listingreview/")
        page.fill("#id_username", "admin")
        page.fill("#id_password", os.environ.get("DEMO_ADMIN_PASSWORD", "demo-admin-pass"))
        page.click("input[type=submit]")
        page.wait_for_selector("#result_list")
        page.screenshot(path=str(OUT / "queue.png"), full_page=True)
        with page.expect_navigation():
            page.keyboard.press("n")  # the review desk's key for the first of the queue
        page.wait_for_selector("#moderation-review")
        page.locator("#moderation-review").screenshot(path=str(OUT / "detail.png"))
        page.goto(f"{BASE}/admin/moderation/decision/dashboard/")
        page.wait_for_selector("svg.mod-chart")
        page.screenshot(path=str(OUT / "dashboard.png"), full_page=True)
        browser.close()


if __name__ == "__main__":
    main()
