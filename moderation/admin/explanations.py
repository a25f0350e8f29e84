"""The scores of a moderated object in plain words, for the review panel: each score
beside the threshold it was held against and the model that made it."""

from __future__ import annotations

from django.utils import timezone
from django.utils.formats import date_format
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from moderation.models import FlagReason, ModerationStatus
from moderation.transitions import history


def held_against(obj, key: str, value: str) -> str:
    """ "0.17 (threshold 0.20, model demo:colour-words-v1)": ``value`` with the threshold
    ``key`` recorded with the scores (``moderation_thresholds``) and the model id."""
    threshold = obj.moderation_thresholds.get(key)
    if threshold is None:
        return _("%(value)s (threshold not recorded, model %(model)s)") % {"value": value, "model": obj.embedding_model}
    return _("%(value)s (threshold %(threshold)s, model %(model)s)") % {
        "value": value,
        "threshold": f"{threshold:.2f}" if isinstance(threshold, float) else threshold,
        "model": obj.embedding_model,
    }


def explain(obj) -> list[str]:
    """The scores in plain words, for a moderator: one sentence or two per check."""
    lines = []
    if obj.consistency_score is not None:
        agreement = _("Text and photo agreement: %(score)s, the cosine similarity of their embeddings.") % {
            "score": held_against(obj, "CONSISTENCY_MIN", f"{obj.consistency_score:.2f}")
        }
        if FlagReason.TEXT_IMAGE_MISMATCH in obj.flag_reasons:
            verdict = _("This is below the threshold: the photo may not show what the text describes.")
        else:
            verdict = _("Within the usual range.")
        lines.append(f"{agreement} {verdict}")
    if obj.category_rank is not None:
        looks_like = ", ".join(f"{s['category']} ({s['score']:.2f})" for s in obj.suggested_categories)
        lines.append(
            _(
                "Listed category ranks #%(rank)s among all categories for this photo (the highest rank "
                "allowed is the threshold). The photo looks most like: %(looks_like)s."
            )
            % {"rank": held_against(obj, "CATEGORY_MAX_RANK", str(obj.category_rank)), "looks_like": looks_like}
        )
    if obj.duplicate_of and FlagReason.REPOST in obj.flag_reasons:
        lines.append(
            _(
                "The same seller listed nearly the same text and photo first as object #%(other)s "
                "(photo similarity %(similarity).3f); this one is the repost."
            )
            % {"similarity": obj.duplicate_similarity, "other": obj.duplicate_of}
        )
    elif obj.duplicate_of and FlagReason.DUPLICATE_IMAGE in obj.flag_reasons:
        lines.append(
            _(
                "The photo is nearly identical (similarity %(similarity)s) to the photo of another "
                "seller's object #%(other)s, which was uploaded first; this one is the later copy."
            )
            % {
                "similarity": held_against(obj, "DUPLICATE_MIN_SIMILARITY", f"{obj.duplicate_similarity:.3f}"),
                "other": obj.duplicate_of,
            }
        )
    for item in obj.prohibited_items:
        lines.append(
            _("The %(on)s looks like a prohibited item, %(concept)s (%(score).2f; flagged from %(threshold).2f).")
            % {"on": _("photo") if item["on"] == "photo" else _("text"), **item}
        )
    if FlagReason.RESUBMITTED in obj.flag_reasons:
        rejection = history(obj).filter(to_status=ModerationStatus.REJECTED).select_related("actor").first()
        copied = {FlagReason.DUPLICATE_IMAGE, FlagReason.REPOST} & set(obj.flag_reasons)
        if rejection is None and obj.duplicate_of and not copied:
            lines.append(
                _(
                    "The photo is the picture of the same seller's rejected object #%(other)s (similarity "
                    "%(similarity).3f): a rejected listing listed again as a new one."
                )
                % {"other": obj.duplicate_of, "similarity": obj.duplicate_similarity}
            )
        elif rejection is None:
            lines.append(_("The photo is the picture of one of the same seller's rejected objects."))
        if rejection is not None:
            lines.append(
                _(
                    "%(actor)s rejected version %(version)s of it on %(when)s (\u201c%(reason)s\u201d); it has "
                    "been edited since. The history below shows every change of its status."
                )
                % {
                    "actor": rejection.actor or _("A moderator"),
                    "version": rejection.content_version,
                    "when": date_format(timezone.localtime(rejection.created_at), "DATETIME_FORMAT"),
                    "reason": rejection.reason,
                }
            )
    if obj.moderation_status == ModerationStatus.ERROR:
        text = ngettext(
            "Could not be scored (%(code)s, %(attempts)d attempt): %(detail)s",
            "Could not be scored (%(code)s, %(attempts)d attempts): %(detail)s",
            obj.moderation_attempts,
        )
        lines.append(
            text
            % {"code": obj.moderation_error, "attempts": obj.moderation_attempts, "detail": obj.moderation_error_detail}
        )
    elif obj.moderation_error and obj.moderation_status != ModerationStatus.PENDING:
        lines.append(
            _("The last rescan failed (%(code)s): %(detail)s The scores shown are the earlier ones.")
            % {"code": obj.moderation_error, "detail": obj.moderation_error_detail}
        )
    return lines
