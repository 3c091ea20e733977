"""Checks that API responses are what the OpenAPI schema promises.

The schema is generated from the code (drf-spectacular) exactly as /api/schema/ serves it. Every
response an API test receives goes through `check_response`: its status must be declared for the
operation, and a JSON body must validate against the declared schema. So the schema cannot
drift from the code without a test failing.
"""

from __future__ import annotations

import copy
import json
import re
from functools import cache
from typing import Any

import jsonschema
from drf_spectacular.generators import SchemaGenerator


@cache
def openapi_document() -> dict[str, Any]:
    schema = SchemaGenerator(urlconf="photobooth.urls").get_schema(request=None, public=True)
    # Round-trip through JSON: what clients see (lazy strings, tuples become plain values).
    return dict(json.loads(json.dumps(schema, default=str)))


def _as_json_schema(node: Any) -> Any:
    """OpenAPI 3.0 schema objects -> JSON Schema: `nullable: true` becomes "or null"."""
    if isinstance(node, list):
        return [_as_json_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    converted = {key: _as_json_schema(value) for key, value in node.items()}
    if converted.pop("nullable", False):
        return {"anyOf": [converted, {"type": "null"}]}
    return converted


@cache
def _components() -> dict[str, Any]:
    return dict(_as_json_schema(copy.deepcopy(openapi_document().get("components", {}))))


@cache
def _path_patterns() -> list[tuple[re.Pattern[str], str]]:
    patterns = []
    for template in openapi_document()["paths"]:
        regex = re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template))
        patterns.append((re.compile(f"^{regex}$"), template))
    # Literal paths first ("/api/stats/global" before "/api/stats/{slot_id}").
    patterns.sort(key=lambda item: item[1].count("{"))
    return patterns


def operation_for(method: str, path: str) -> dict[str, Any] | None:
    for pattern, template in _path_patterns():
        if pattern.match(path):
            return openapi_document()["paths"][template].get(method.lower())  # type: ignore[no-any-return]
    return None


class SchemaMismatch(AssertionError):
    pass


def check_response(method: str, path: str, status: int, content_type: str, body: bytes) -> None:
    """AssertionError unless this response is one the schema declares for the operation."""
    operation = operation_for(method, path)
    if operation is None:
        if path.startswith("/api/") and status != 404 and status != 405:
            raise SchemaMismatch(f"{method} {path} answered {status} but is not in the schema")
        return
    responses = operation.get("responses", {})
    declared = responses.get(str(status)) or responses.get("default")
    if declared is None:
        raise SchemaMismatch(
            f"{method} {path}: status {status} is not declared (declared: {sorted(responses)})"
        )
    contents = declared.get("content") or {}
    if not body or status == 204:
        return
    media_type = content_type.split(";")[0].strip()
    if media_type != "application/json":
        if contents and media_type not in contents and "*/*" not in contents:
            raise SchemaMismatch(f"{method} {path} {status}: {media_type} not declared")
        return
    if "application/json" not in contents:
        raise SchemaMismatch(f"{method} {path} {status}: a JSON body is not declared")
    schema = _as_json_schema(contents["application/json"].get("schema", {}))
    schema = {**schema, "components": _components()}
    try:
        jsonschema.validate(json.loads(body), schema)
    except jsonschema.ValidationError as error:
        raise SchemaMismatch(
            f"{method} {path} {status}: body does not match the schema: {error.message} "
            f"at {'/'.join(str(p) for p in error.absolute_path)}"
        ) from None
