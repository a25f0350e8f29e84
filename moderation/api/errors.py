"""One error body for every API error, and no 500 for bad input.

    {"error": {"status": 400, "code": "invalid", "message": "...", "fields": {"title": ["..."]}}}

The app's views use ``exception_handler`` whatever ``REST_FRAMEWORK`` says
(``moderation.api.views.ModerationAPIView``); a host's own views get it with
``REST_FRAMEWORK["EXCEPTION_HANDLER"] = "moderation.api.errors.exception_handler"``.
Each status has one ``code`` (DRF's: ``not_found``, ``method_not_allowed``, ...),
except 400: ``invalid`` for a value, ``parse_error`` for a body.
"""

from __future__ import annotations

from django.core.exceptions import PermissionDenied, RequestDataTooBig
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from moderation.embedders import EmbedderError, PermanentEmbedError, TransientEmbedError
from moderation.exceptions import InvalidTransition


class PayloadTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "The request body is too large."
    default_code = "too_large"


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
            fields = {key: value for key, value in detail.items() if key != "non_field_errors"}
            body["fields"] = fields
            first = next(iter(detail.values()), [""])
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
