"""The REST framework's JSON parser, refusing nesting too deep to parse as a 400 like any malformed body.

`json` raises RecursionError, not ValueError, for arrays or objects nested
about a thousand deep; DRF's parser catches only ValueError, so such a body
(anonymous endpoints included) was a 500 with a traceback.
"""

from rest_framework import parsers
from rest_framework.exceptions import ParseError


class JSONParser(parsers.JSONParser):
    def parse(self, stream, media_type=None, parser_context=None):
        try:
            return super().parse(stream, media_type, parser_context)
        except RecursionError as exc:
            raise ParseError("JSON parse error - nested too deeply.") from exc
