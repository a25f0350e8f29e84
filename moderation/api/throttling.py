from rest_framework import throttling
from rest_framework.settings import api_settings

# The rates of the app's scopes when REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"] names none.
# ``login``: a password exchanged for a token, per client address; a brute force of one
# account's password meets it after a few tries.
DEFAULT_RATES = {"uploads": "120/hour", "search": "600/minute", "login": "10/minute"}


class ScopedRateThrottle(throttling.ScopedRateThrottle):
    """DRF's scoped throttle, reading the rates when asked (so test settings apply), with
    the app's defaults under the host's rates.

    Views set ``throttle_scope``: ``uploads`` (creating or changing a listing's photo),
    ``search`` and ``login`` (a password for a token). Rates in ``REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]``.
    """

    @property
    def THROTTLE_RATES(self):
        return {**DEFAULT_RATES, **api_settings.DEFAULT_THROTTLE_RATES}
