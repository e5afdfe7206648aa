"""Validate responses against the schemas of the Driftlock OpenAPI document (tests/data/openapi.yaml)."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import yaml
from openapi_schema_validator import OAS30Validator


@cache
def _spec() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((Path(__file__).parent / "data" / "openapi.yaml").read_text())
    return data


def _inline(node: Any) -> Any:
    if isinstance(node, dict):
        if "$ref" in node:
            target: Any = _spec()
            for part in node["$ref"].lstrip("#/").split("/"):
                target = target[part]
            return _inline(target)
        return {k: _inline(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_inline(v) for v in node]
    return node


def response_schema(path: str, method: str, status: str = "200") -> dict[str, Any]:
    response = _inline(_spec()["paths"][path][method]["responses"][status])
    return response["content"]["application/json"]["schema"]  # type: ignore[no-any-return]


def component(name: str) -> dict[str, Any]:
    return _inline(_spec()["components"]["schemas"][name])  # type: ignore[no-any-return]


def validate(instance: Any, schema: dict[str, Any]) -> None:
    """Raise if ``instance`` does not match; formats (uuid for stream ids) are not checked: see README."""
    OAS30Validator(schema).validate(instance)
