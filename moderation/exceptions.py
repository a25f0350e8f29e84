"""The app's own errors. The embedders keep theirs, classified by what the caller must
do, in ``moderation.embedders.base``."""


class InvalidTransition(Exception):
    """The object is not in a state this change can start from (``moderation.transitions``).

    The admin shows it as a warning; the API answers 409 ``conflict``."""
