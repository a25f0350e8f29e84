"""Schemathesis against /api/schema/ on a live server: no 5xx, no undocumented status
codes, no response that violates the schema."""

import shutil
import subprocess

import pytest

from tests.helpers import ROOT, score_now

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def test_the_api_keeps_its_openapi_contract(
    live_server, settings, demo_moderation, user_factory, category_factory, listing_factory, photo, tmp_path
):
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {"search": "100000/minute", "uploads": "100000/minute", "login": "100000/minute"},
    }
    seller = user_factory(username="fuzzer")
    seller.set_password("fuzz-pass")
    seller.save()
    category_factory("Kitchen", slug="kitchen")
    for colour in ("red", "blue"):
        score_now(listing_factory(title=f"{colour} mug", image=photo(colour, "cup"), seller=seller))
    executable = shutil.which("schemathesis", path=str(ROOT / ".venv" / "bin")) or "schemathesis"
    run = subprocess.run(
        [
            executable,
            "run",
            f"{live_server.url}/api/schema/",
            "--checks",
            "not_a_server_error,status_code_conformance,response_schema_conformance",
            "--max-examples",
            "12",
            "--seed",
            "20261128",
            "--auth",
            "fuzzer:fuzz-pass",
            "--workers",
            "1",
            "--request-timeout",
            "30",
            "--report-dir",
            str(tmp_path),
        ],
        # Schemathesis keeps an example cache in `.schemathesis/` of its working folder:
        # the test's own folder, so that nothing is written into the checkout.
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    (tmp_path / "schemathesis.txt").write_text(run.stdout + run.stderr)
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
