"""One error body for every API error, and no 500 for bad input.

    {"error": {"status": 400, "code": "invalid", "message": "...", "fields": {"title": ["..."]}}}

The app's views use ``exception_handler`` whatever ``REST_FRAMEWORK`` says
(``moderation.api.views.ModerationAPIView``); a host's own views get it with
``REST_FRAMEWORK["EXCEPTION_HANDLER"] = "moderation.api.errors.exception_handler"``.
Each status has one ``code`` (DRF's: ``not_found``, ``method_not_allowed``, ...),
except 400: ``invalid`` for a value, ``parse_error`` for a body, and for a request
Django refuses as a whole (a ``SuspiciousOperation``) ``too_many_fields``,
``too_many_files`` or ``bad_request``. ``fields`` is there when the error names fields;
an error about the body as a whole (DRF's ``non_field_errors``: a JSON list where an
object was expected, a wrong password) has only its ``message``.
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.core.exceptions import (
    PermissionDenied,
    RequestDataTooBig,
    SuspiciousOperation,
    TooManyFieldsSent,
    TooManyFilesSent,
)
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import exception_handler as drf_exception_handler

from moderation.embedders import EmbedderError, PermanentEmbedError, TransientEmbedError
from moderation.exceptions import InvalidTransition


class PayloadTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "The request body is too large."
    default_code = "too_large"


class BadRequest(exceptions.APIException):
    """A request Django refuses as a whole (``SuspiciousOperation``): its ``code`` says why."""

    status_code = status.HTTP_400_BAD_REQUEST
    default_detail = "The request is malformed."
    default_code = "bad_request"


def _bad_request(exc: SuspiciousOperation) -> BadRequest:
    """The 400 of a ``SuspiciousOperation``. Django's own message names a setting, which
    is the site's business: the client is told the limit it went over."""
    if isinstance(exc, TooManyFieldsSent):
        limit = settings.DATA_UPLOAD_MAX_NUMBER_FIELDS
        return BadRequest(f"The request has more than {limit} query parameters and form fields.", "too_many_fields")
    if isinstance(exc, TooManyFilesSent):
        limit = settings.DATA_UPLOAD_MAX_NUMBER_FILES
        return BadRequest(f"The request has more than {limit} files.", "too_many_files")
    return BadRequest()


class Conflict(exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_detail = "The object is not in a state that allows this."
    default_code = "conflict"


class ServiceUnavailable(exceptions.APIException):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_detail = "The embedding service is unavailable; try again later."
    default_code = "unavailable"


def _translate(exc: Exception) -> Exception:
    """Our own errors, and Django's, as the API exceptions that say the right status and code."""
    # DRF makes these a NotFound and a PermissionDenied too, but only inside its own
    # handler: translated here, their code is the status's code, not "error".
    if isinstance(exc, Http404):
        return exceptions.NotFound(*exc.args)
    if isinstance(exc, PermissionDenied):
        return exceptions.PermissionDenied(*exc.args)
    if isinstance(exc, RequestDataTooBig):
        return PayloadTooLarge(str(exc))
    if isinstance(exc, SuspiciousOperation):
        # Django's handler would answer its HTML 400 page, and with DEBUG on build its
        # debug page, which reads the query string again and fails (a 500). Logged to
        # the same security logger as Django logs it, without the request it cannot read.
        logging.getLogger(f"django.security.{type(exc).__name__}").error(
            str(exc), exc_info=exc, extra={"status_code": 400}
        )
        return _bad_request(exc)
    if isinstance(exc, InvalidTransition):
        return Conflict(str(exc))
    if isinstance(exc, PermanentEmbedError):
        return exceptions.ValidationError({"image": [str(exc)]}, code=exc.code)
    if isinstance(exc, TransientEmbedError | EmbedderError):
        return ServiceUnavailable(str(exc))
    return exc


def exception_handler(exc, context):
    exc = _translate(exc)
    response = drf_exception_handler(exc, context)
    if response is None:
        return None  # a real bug: let Django report it
    detail = response.data
    body = {"status": response.status_code, "code": exc.default_code, "message": ""}
    if isinstance(exc, exceptions.ValidationError):
        body["code"] = "invalid"
        if isinstance(detail, dict):
            fields = {key: value for key, value in detail.items() if key != api_settings.NON_FIELD_ERRORS_KEY}
            if fields:
                body["fields"] = fields
            first = detail.get(api_settings.NON_FIELD_ERRORS_KEY) or next(iter(detail.values()), [""])
            body["message"] = str(first[0] if isinstance(first, list) and first else first)
        else:
            body["message"] = str(detail[0] if isinstance(detail, list) and detail else detail)
    else:
        body["message"] = str(detail.get("detail", detail)) if isinstance(detail, dict) else str(detail)
        codes = exc.get_codes()
        if isinstance(codes, str):
            body["code"] = codes
    if response.status_code == status.HTTP_429_TOO_MANY_REQUESTS and getattr(exc, "wait", None):
        body["retry_after"] = int(exc.wait)
    return Response({"error": body}, status=response.status_code, headers=getattr(response, "headers", None))
