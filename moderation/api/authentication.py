"""DRF's token, session and HTTP Basic authentication, refusing credentials the database cannot hold.

A credential is looked up in the database: the token by its key, the Basic user name
by the auth backend (``WHERE username = ...``), the session cookie's key by the
session store. PostgreSQL
text cannot hold a NUL, nor a lone surrogate, and a value with one is a ``DataError``,
a 500 on every endpoint before any login. Such a credential matches no user, so:

- ``TokenAuthentication`` answers it as a wrong token (``authentication_failed``);
- ``BasicAuthentication`` answers it as a wrong password (``authentication_failed``);
- ``SessionAuthentication`` takes such a session cookie for no session (anonymous).

Set them in place of DRF's own (``rest_framework.authtoken`` in ``INSTALLED_APPS`` for
the tokens)::

    REST_FRAMEWORK["DEFAULT_AUTHENTICATION_CLASSES"] = [
        "moderation.api.authentication.TokenAuthentication",
        "moderation.api.authentication.SessionAuthentication",
        "moderation.api.authentication.BasicAuthentication",
    ]

The first class names the scheme of a 401: DRF answers a request without credentials
401 with ``WWW-Authenticate`` only when the first class has a header to send (token and
Basic do; session does not, and the answer would be a 403). Token first: an app's
request then costs one indexed lookup, where Basic re-hashes the password on every
request (PBKDF2, about a second: docs/benchmarks.md, bench/auth_cost.py).
"""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.core.validators import ProhibitNullCharactersValidator
from django.utils.translation import gettext_lazy as _
from drf_spectacular.authentication import BasicScheme, SessionScheme, TokenScheme
from rest_framework import authentication, exceptions
from rest_framework.validators import ProhibitSurrogateCharactersValidator

DATABASE_TEXT_VALIDATORS = (ProhibitNullCharactersValidator(), ProhibitSurrogateCharactersValidator())


def database_can_hold(text: str) -> bool:
    """Whether PostgreSQL text can hold ``text``: no NUL character and no lone surrogate."""
    try:
        for validator in DATABASE_TEXT_VALIDATORS:
            validator(text)
    except (ValidationError, exceptions.ValidationError):
        return False
    return True


class TokenAuthentication(authentication.TokenAuthentication):
    """DRF's token authentication (``Authorization: Token <key>``); a key the database
    cannot hold is a wrong one (``AuthenticationFailed``, as DRF says for an unknown key)."""

    def authenticate_credentials(self, key):
        if not database_can_hold(key):
            raise exceptions.AuthenticationFailed(_("Invalid token."))
        return super().authenticate_credentials(key)


class BasicAuthentication(authentication.BasicAuthentication):
    """HTTP Basic authentication; a user name or password the database cannot hold is a
    wrong one (``AuthenticationFailed``, as DRF says for a wrong password)."""

    def authenticate_credentials(self, userid, password, request=None):
        if not (database_can_hold(userid) and database_can_hold(password)):
            raise exceptions.AuthenticationFailed(_("Invalid username/password."))
        return super().authenticate_credentials(userid, password, request)


class SessionAuthentication(authentication.SessionAuthentication):
    """Django's session authentication; a session cookie the database cannot hold is no
    session: the request is anonymous, as with an unknown or expired session key."""

    def authenticate(self, request):
        session = getattr(request._request, "session", None)
        if session is not None and session.session_key and not database_can_hold(session.session_key):
            return None
        return super().authenticate(request)


# The OpenAPI security schemes of the three (drf-spectacular's for DRF's own classes,
# which it matches by exact class): registered when this module is imported.
class SessionAuthenticationScheme(SessionScheme):
    target_class = SessionAuthentication


class BasicAuthenticationScheme(BasicScheme):
    target_class = BasicAuthentication


class TokenAuthenticationScheme(TokenScheme):
    target_class = TokenAuthentication
