"""The JSON Schemas of docs/schemas/, ready to validate real messages."""

from __future__ import annotations

import json
from pathlib import Path

from jsonschema import Draft202012Validator
from referencing import Registry, Resource

SCHEMAS = Path(__file__).parent.parent.parent / "docs" / "schemas"


def validators() -> dict[str, Draft202012Validator]:
    docs = {
        p.name.removesuffix(".schema.json"): json.loads(p.read_text())
        for p in SCHEMAS.glob("*.schema.json")
    }
    registry = Registry().with_resources(
        (d["$id"], Resource.from_contents(d)) for d in docs.values()
    )
    return {name: Draft202012Validator(d, registry=registry) for name, d in docs.items()}
