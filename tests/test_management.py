"""The moderation commands: scan and re-embed, inline or queued."""

import io

import pytest
from django.core.management import call_command

from catalog.models import Listing
from moderation import transitions
from moderation.models import ModerationStatus
from tests.helpers import score_now

pytestmark = pytest.mark.django_db
S = ModerationStatus


def test_scan_sync_scores_every_pending_listing_with_a_progress_bar(demo_moderation, listing_factory, photo, capsys):
    for colour in ["red", "blue", "green"]:
        listing_factory(title=f"{colour} box", image=photo(colour))
    call_command("moderation_scan", "--sync")
    out = capsys.readouterr()
    assert not Listing.objects.filter(moderation_status=S.PENDING).exists()
    assert "3 object(s)" in out.out
    assert "ok" in out.out


def test_reembed_writes_vectors_of_the_new_model_and_keeps_decisions(
    settings, demo_moderation, listing_factory, photo, admin_user
):
    listing = listing_factory(title="Red hiking boots", image=photo("blue", "shoe"))
    score_now(listing)
    transitions.reject(listing, actor=admin_user, reason="wrong photo")
    settings.MODERATION = {
        **demo_moderation,
        "EMBEDDER": {
            **demo_moderation["EMBEDDER"],
            "OPTIONS": {**demo_moderation["EMBEDDER"]["OPTIONS"], "model_id": "demo:colour-words-v2"},
        },
    }
    call_command("moderation_reembed", "--sync")
    listing.refresh_from_db()
    assert listing.embedding_model == "demo:colour-words-v2"
    assert listing.moderation_status == S.REJECTED


def test_reembed_leaves_listings_in_error_alone_and_scan_brings_them_back(
    settings, demo_moderation, listing_factory, photo
):
    """Issue #10 follow-up, fault 4: a photo that cannot be decoded (or that crashes the
    decoder) is not tried again by a change of model; a scan tries it again."""
    broken = listing_factory(title="Green chair", stored_image=b"not an image")
    score_now(broken)
    assert (broken.moderation_status, broken.moderation_attempts) == (S.ERROR, 1)
    settings.MODERATION = {
        **demo_moderation,
        "EMBEDDER": {
            **demo_moderation["EMBEDDER"],
            "OPTIONS": {**demo_moderation["EMBEDDER"]["OPTIONS"], "model_id": "demo:colour-words-v2"},
        },
    }
    call_command("moderation_reembed", "--sync")
    call_command("moderation_reembed", "--sync", "--all")
    broken.refresh_from_db()
    assert (broken.moderation_status, broken.moderation_attempts) == (S.ERROR, 1)
    call_command("moderation_scan", "--sync")
    broken.refresh_from_db()
    assert (broken.moderation_status, broken.moderation_error, broken.moderation_attempts) == (
        S.ERROR,
        "image_format",
        2,
    )


def test_the_demo_model_command_writes_the_model_in_the_split_onnx_layout(tmp_path):
    out = io.StringIO()
    call_command("moderation_demo_model", str(tmp_path / "colour-words"), stdout=out)
    assert "demo:colour-words-v1 written to" in out.getvalue()
    for name in ("config.json", "visual/model.onnx", "visual/preprocess_cfg.json", "textual/model.onnx"):
        assert (tmp_path / "colour-words" / name).is_file()


def test_the_scan_progress_bar_redraws_one_line_on_the_commands_stderr(
    demo_moderation, listing_factory, photo, settings
):
    """Django's stderr wrapper ends every write with a newline (and colours it red on a
    terminal); tqdm's redraws must reach the stream as they are, "\\r" and all."""
    settings.MODERATION = {**settings.MODERATION, "BATCH_SIZE": 1}
    for colour in ["red", "blue", "green"]:
        listing_factory(title=f"{colour} box", image=photo(colour))
    stderr = io.StringIO()
    call_command("moderation_scan", "--sync", stderr=stderr, stdout=io.StringIO())
    drawn = stderr.getvalue()
    assert drawn.count("\r") >= 2
    assert drawn.rstrip("\n").count("\n") == 0, drawn
    assert "3/3" in drawn.splitlines()[-1]
