"""The demo marketplace's receivers of the moderation signals: the seller hears of a rejection.

This is the example of docs/pipeline.md, "Signals": a host site hooks "e-mail the
seller" with one receiver, connected in its ``AppConfig.ready``. The signal is sent
after the rejection commits, so a rolled-back decision sends no mail.
"""

from django.core.mail import send_mail
from django.dispatch import receiver
from django.utils.translation import gettext as _

from moderation.models import ModerationStatus
from moderation.signals import object_decided

from .models import Listing


@receiver(object_decided, sender=Listing, dispatch_uid="catalog.email_seller_on_reject")
def email_seller_on_reject(sender, instance, status, reason, **kwargs):
    """Tell the seller why their listing was taken down (the moderator's reason, never
    the scores). A seller without an e-mail address is not written to."""
    seller = instance.seller
    if status != ModerationStatus.REJECTED or not seller.email:
        return
    send_mail(
        subject=_("Your listing “%(title)s” was removed") % {"title": instance.title},
        message=_("A moderator removed your listing “%(title)s”.\n\nReason: %(reason)s\n\nEdit it to submit it again.")
        % {"title": instance.title, "reason": reason},
        from_email=None,  # DEFAULT_FROM_EMAIL
        recipient_list=[seller.email],
    )
