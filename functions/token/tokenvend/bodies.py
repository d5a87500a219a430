"""Request bodies, parsed by hand against the specs in `schemas`: a JSON object whose members are strings (or null,
meaning "the default"), nothing else. Shape and types only; what a value may be is checked where it is used.

The first problem found is the answer, in the order pydantic used to report them (the declared members in order,
then unknown members in the order sent), with the same one-line messages naming the field:
`The body is not valid JSON.`, `The body must be a JSON object.`, `sdp: Field required`,
`voice: Input should be a valid string`, `instructions: unknown field.`.
"""

from __future__ import annotations

import json
from typing import Any

from tokenvend.errors import ApiError, Code, invalid_request
from tokenvend.schemas import BodySpec

JSON_MEDIA_TYPE = "application/json"
UNSUPPORTED = "Send the body as JSON, with Content-Type: application/json."


def parse(spec: BodySpec, body: str | None, content_type: str | None) -> dict[str, str | None]:
    """Every member of `spec`, None where the caller sent nothing or null; or ApiError 415 / 400."""
    if not _is_json(content_type):
        raise ApiError(415, Code.UNSUPPORTED_MEDIA_TYPE, UNSUPPORTED)
    value = _load(body) if body else None
    if value is None:
        if spec.optional:
            return {f.name: None for f in spec.fields}
        raise invalid_request("body: Field required")
    if not isinstance(value, dict):  # a JSON array too: never its first element taken as the body
        raise invalid_request("The body must be a JSON object.")
    parsed: dict[str, str | None] = {}
    for field in spec.fields:
        member = value.get(field.name)
        if member is None and field.required:
            raise invalid_request(f"{field.name}: Field required" if field.name not in value
                                  else f"{field.name}: Input should be a valid string")
        if member is not None and not isinstance(member, str):
            raise invalid_request(f"{field.name}: Input should be a valid string")
        parsed[field.name] = member
    unknown = next((name for name in value if name not in parsed), None)
    if unknown is not None:
        raise invalid_request(f"{unknown}: unknown field.")
    return parsed


def _is_json(content_type: str | None) -> bool:
    """No Content-Type (a script's bare POST) or application/json with any parameters; media types ignore case."""
    media_type = (content_type or "").split(";", 1)[0].strip().lower()
    return media_type in ("", JSON_MEDIA_TYPE)


def _load(body: str) -> Any:
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        # ValueError covers a number past Python's digit limit too, which is no JSON error but no body of ours.
        raise invalid_request("The body is not valid JSON.") from None
