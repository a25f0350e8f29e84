from rest_framework import throttling
from rest_framework.settings import api_settings


class ScopedRateThrottle(throttling.ScopedRateThrottle):
    """DRF's scoped throttle, reading the rates when asked (so test settings apply).

    Views set ``throttle_scope``: ``uploads`` (creating or changing a listing's photo)
    and ``search``. Rates in ``REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]``.
    """

    @property
    def THROTTLE_RATES(self):
        return api_settings.DEFAULT_THROTTLE_RATES
