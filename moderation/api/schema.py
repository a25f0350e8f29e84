"""OpenAPI: document the one error body on every operation (drf-spectacular hook).

Add it after drf-spectacular's own hook::

    SPECTACULAR_SETTINGS = {"POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "moderation.api.schema.document_errors",
    ]}
"""

ERROR_SCHEMA = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["status", "code", "message"],
            "properties": {
                "status": {"type": "integer", "example": 400},
                "code": {"type": "string", "example": "invalid"},
                "message": {"type": "string", "example": "This field is required."},
                "fields": {
                    "type": "object",
                    "additionalProperties": True,
                    "example": {"title": ["This field is required."]},
                },
                "retry_after": {"type": "integer", "description": "Seconds to wait, on 429."},
            },
        }
    },
}
DESCRIPTIONS = {
    "400": "Invalid input; `fields` names what is wrong.",
    "401": "Not authenticated.",
    "403": "Not allowed.",
    "404": "No such object, or not yours; or no endpoint has this URL.",
    "405": "The endpoint does not take this method.",
    "409": "The object's state does not allow this.",
    "413": "The photo or the request is too large.",
    "415": "The body's content type is not one the endpoint parses.",
    "429": "Too many requests; `retry_after` says when to try again.",
    "503": "The embedding service is unavailable; try again later.",
}


def document_errors(result, generator, request, public):
    """Every operation may answer 400, 401, 403, 404, 405 and 429; writes may answer 409, 413
    and 415; anything that embeds (search, wherever the host mounts it) may answer 503.
    All with the same body."""
    result.setdefault("components", {}).setdefault("schemas", {})["Error"] = ERROR_SCHEMA
    reference = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    for path, operations in result.get("paths", {}).items():
        for method, operation in operations.items():
            codes = ["400", "401", "403", "404", "405", "429"]
            if method in ("post", "put", "patch"):
                codes += ["409", "413", "415"]
            if "/search/" in path or method in ("post", "put", "patch"):
                codes.append("503")
            responses = operation.setdefault("responses", {})
            for code in codes:
                responses.setdefault(code, {"description": DESCRIPTIONS[code], "content": reference})
    return result
