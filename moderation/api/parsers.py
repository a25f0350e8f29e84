"""Request body parsers: DRF's, with every body that cannot be parsed answered as a 400.

Set ``REST_FRAMEWORK["DEFAULT_PARSER_CLASSES"]`` to this module's JSON parser beside
DRF's form and multipart parsers, and use it in views that list their parsers.
"""

from rest_framework import parsers
from rest_framework.exceptions import ParseError


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser, raising ParseError (400) for a body nested too deeply.

    ``json.load`` recurses once per level: a 2 KB body of 1000 nested lists
    (``{"title": [[[...]]]}``) exhausts Python's recursion limit, and the
    RecursionError, which DRF's parser does not catch, was a 500. Bodies that do
    parse, however deep, reach serializers whose fields reject what is not their
    type.
    """

    def parse(self, stream, media_type=None, parser_context=None):
        try:
            return super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise ParseError("JSON parse error - the body is nested too deeply.") from None
