"""Signals a host site can hook, sent after a moderation state change commits.

Each is sent by ``moderation.transitions`` through ``transaction.on_commit``: a
receiver sees the committed row, and a change rolled back sends nothing. ``sender`` is
the moderated model's class and ``instance`` the object as the transition left it.
A receiver that raises does not undo the change (it is committed): Django's
``send_robust`` is used, and the error is logged on the ``moderation`` logger. The
app's own receivers live in ``signal_handlers``; an example receiver that e-mails the
seller is in docs/pipeline.md, "Signals".
"""

from __future__ import annotations

from django.dispatch import Signal

# The task scored the object and found something wrong: it waits in the review queue.
# Args: sender (model class), instance, reasons (list of flag reason codes, e.g.
# ["text_image_mismatch"]).
object_flagged = Signal()

# A moderator approved or rejected the object.
# Args: sender, instance, status ("approved" or "rejected"), reason (str: the preset
# reason and/or the moderator's text; never empty for a rejection), actor (the user),
# decision (the moderation.models.Decision row written).
object_decided = Signal()

# The object could not be scored and is now in ``error`` (not retried soon).
# Args: sender, instance, code (str: the error's code, e.g. "image_undecodable"),
# detail (str: the error's message, for the site's staff, not the seller).
object_failed = Signal()
