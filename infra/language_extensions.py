"""CloudFormation's ``AWS::LanguageExtensions`` transform, offline (template tests, deployer policy).

samtranslator does not understand ``Fn::ForEach``; CloudFormation runs LanguageExtensions first
(template.yaml lists it before the SAM transform), so the tests do the same here. What this
implements is what the template uses, as CloudFormation documents it:

- ``Fn::ForEach::<Name>: [Identifier, Collection, {OutputKey: OutputValue}]`` anywhere in the
  template (Resources, Outputs, inside properties): one copy per item of the collection (a list,
  or a ``Ref`` to a CommaDelimitedList parameter);
- in an OutputKey, ``${Identifier}`` becomes the item and ``&{Identifier}`` the item without its
  non-alphanumeric characters (logical IDs); in an OutputValue, ``Ref: Identifier`` becomes the item
  and so does ``${Identifier}``/``&{Identifier}`` inside ``Fn::Sub`` strings — nothing else (a plain
  string, ``DependsOn`` or a ``Ref`` to ``X&{Identifier}`` is not rewritten, as in CloudFormation);
- ``Fn::GetAtt`` whose logical ID is a ``Fn::Sub`` without variables becomes a plain ``Fn::GetAtt``.

``Fn::ToJsonString`` is left for the resolver (CloudFormation resolves it with the rest).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from typing import Any

TRANSFORM = "AWS::LanguageExtensions"
FOR_EACH = "Fn::ForEach::"
_NOT_ALPHANUMERIC = re.compile(r"[^A-Za-z0-9]")


def expand(template: Mapping[str, Any], parameters: Mapping[str, Any]) -> dict[str, Any]:
    """The template after LanguageExtensions: loops unrolled, the transform removed from the list.

    `parameters` holds the values CloudFormation would use (a CommaDelimitedList as a list).
    """
    document: dict[str, Any] = copy.deepcopy(dict(template))
    transforms = document.get("Transform")
    transforms = transforms if isinstance(transforms, list) else [transforms]
    assert transforms[0] == TRANSFORM, "LanguageExtensions must run first"
    rest = transforms[1:]
    document["Transform"] = rest[0] if len(rest) == 1 else rest
    for section in ("Resources", "Outputs"):
        if section in document:
            document[section] = _expand(document[section], parameters)
    return document


def _expand(node: Any, parameters: Mapping[str, Any]) -> Any:
    if isinstance(node, list):
        return [_expand(item, parameters) for item in node]
    if not isinstance(node, dict):
        return node
    expanded: dict[str, Any] = {}
    for key, value in node.items():
        if isinstance(key, str) and key.startswith(FOR_EACH):
            for out_key, out_value in _unroll(key, value, parameters).items():
                assert out_key not in expanded, f"{key} makes {out_key} twice (a duplicate logical ID)"
                expanded[out_key] = out_value
        else:
            assert key not in expanded, f"{key} appears twice"
            expanded[key] = _expand(value, parameters)
    if set(expanded) == {"Fn::GetAtt"}:
        expanded["Fn::GetAtt"] = _literal_get_att(expanded["Fn::GetAtt"])
    return expanded


def _unroll(name: str, loop: Any, parameters: Mapping[str, Any]) -> dict[str, Any]:
    identifier, collection, outputs = loop
    assert isinstance(identifier, str) and isinstance(outputs, dict), f"{name} is malformed"
    items = _collection(collection, parameters)
    result: dict[str, Any] = {}
    for item in items:
        for key_template, value_template in outputs.items():
            key = _replace(key_template, identifier, item)
            assert key not in result, f"{name} makes {key} twice (a duplicate logical ID)"
            result[key] = _expand(_substitute(value_template, identifier, item), parameters)
    return result


def _collection(collection: Any, parameters: Mapping[str, Any]) -> list[str]:
    if isinstance(collection, list):
        return [str(item) for item in collection]
    if isinstance(collection, dict) and set(collection) == {"Ref"}:
        value = parameters[collection["Ref"]]
        assert isinstance(value, list), f"Fn::ForEach over {collection['Ref']}, which is not a list parameter"
        return [str(item) for item in value]
    raise AssertionError(f"Fn::ForEach collection {collection!r} is not understood by this test")


def _replace(text: str, identifier: str, item: str) -> str:
    return text.replace("${" + identifier + "}", item).replace("&{" + identifier + "}", _NOT_ALPHANUMERIC.sub("", item))


def _substitute(node: Any, identifier: str, item: str) -> Any:
    """An OutputValue with the identifier replaced where CloudFormation replaces it."""
    if isinstance(node, list):
        return [_substitute(value, identifier, item) for value in node]
    if not isinstance(node, dict):
        return node
    if set(node) == {"Ref"} and node["Ref"] == identifier:
        return item
    if set(node) == {"Fn::Sub"}:
        argument = node["Fn::Sub"]
        if isinstance(argument, str):
            return {"Fn::Sub": _replace(argument, identifier, item)}
        text, variables = argument
        return {"Fn::Sub": [_replace(text, identifier, item), _substitute(variables, identifier, item)]}
    result: dict[str, Any] = {}
    for key, value in node.items():
        if isinstance(key, str) and key.startswith(FOR_EACH):
            inner_identifier, collection, outputs = value
            outputs = {_replace(k, identifier, item): _substitute(v, identifier, item) for k, v in outputs.items()}
            result[key] = [inner_identifier, _substitute(collection, identifier, item), outputs]
        else:
            result[key] = _substitute(value, identifier, item)
    return result


def _literal_get_att(argument: Any) -> Any:
    if isinstance(argument, list) and isinstance(argument[0], dict) and set(argument[0]) == {"Fn::Sub"}:
        logical_id = argument[0]["Fn::Sub"]
        assert isinstance(logical_id, str) and "${" not in logical_id, f"GetAtt of {logical_id!r}"
        return [logical_id, *argument[1:]]
    return argument
