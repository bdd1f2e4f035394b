"""A saga's input model, loaded at synth and turned into an API Gateway request model.

The model is a pydantic class in the Lambda code (``SagaDefinition.input_model``). API Gateway
validates request bodies against JSON Schema draft 4, while pydantic writes draft 2020-12; the
differences that matter for request models (``$defs`` references, ``const``, numeric
``exclusiveMinimum``/``exclusiveMaximum``) are converted here, and nothing is dropped silently:
a keyword draft 4 cannot express fails synthesis, naming the saga.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Any

from saga_kit.cdk.declaration import SagaDeclarationError, SagaDefinition

DRAFT4 = "http://json-schema.org/draft-04/schema#"
#: Keywords of later drafts that draft 4 has no way to say; a model that needs them must be
#: loosened for the gateway (the handler still applies the full model).
UNSUPPORTED = frozenset({"if", "then", "else", "dependentRequired", "dependentSchemas",
                         "prefixItems", "contains", "propertyNames", "unevaluatedProperties",
                         "$dynamicRef"})


def load_input_model(definition: SagaDefinition, handlers_dir: Path) -> Any:
    """The pydantic model class ``definition.input_model`` names, imported from the code dir."""
    from pydantic import BaseModel

    assert definition.input_model is not None
    module_name, _, class_name = definition.input_model.rpartition(".")
    where = f"saga '{definition.name}': input_model '{definition.input_model}'"
    added = str(Path(handlers_dir).resolve())
    sys.path.insert(0, added)
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise SagaDeclarationError(
            f"{where}: cannot import {module_name} from {handlers_dir} ({error}); fix the path or "
            "add the module") from None
    finally:
        sys.path.remove(added)
    model = getattr(module, class_name, None)
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        raise SagaDeclarationError(
            f"{where}: {module_name} defines no pydantic model '{class_name}'; declare "
            f"'class {class_name}(pydantic.BaseModel)' there")
    return model


def request_model_schema(definition: SagaDefinition, handlers_dir: Path) -> dict[str, Any]:
    """The draft-4 JSON Schema of the saga's input (any JSON object when it declares none)."""
    if definition.input_model is None:
        return {"$schema": DRAFT4, "title": f"{definition.name} input", "type": "object"}
    model = load_input_model(definition, handlers_dir)
    schema = model.model_json_schema()
    definitions = schema.pop("$defs", {})
    try:
        converted = _draft4(schema, definitions, seen=())
    except ValueError as error:
        raise SagaDeclarationError(
            f"saga '{definition.name}': input_model '{definition.input_model}': {error}") from None
    return {"$schema": DRAFT4, **converted}


def _draft4(node: Any, definitions: dict[str, Any], seen: tuple[str, ...]) -> Any:
    if isinstance(node, list):
        return [_draft4(item, definitions, seen) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        name = node["$ref"].removeprefix("#/$defs/")
        if name in seen:
            raise ValueError(f"'{name}' refers to itself; API Gateway models cannot recurse")
        return _draft4({**definitions[name], **{k: v for k, v in node.items() if k != "$ref"}},
                       definitions, (*seen, name))
    unsupported = UNSUPPORTED & node.keys()
    if unsupported:
        raise ValueError(f"uses {', '.join(sorted(unsupported))}, which JSON Schema draft 4 (API "
                         "Gateway models) cannot express; loosen the model")
    converted: dict[str, Any] = {}
    for key, value in node.items():
        if key == "const":
            converted["enum"] = [value]
        elif key in ("exclusiveMinimum", "exclusiveMaximum") and not isinstance(value, bool):
            converted[key.replace("exclusive", "").lower()] = value
            converted[key] = True
        elif key == "properties":
            converted[key] = {name: _draft4(sub, definitions, seen) for name, sub in value.items()}
        else:
            converted[key] = _draft4(value, definitions, seen)
    return converted
