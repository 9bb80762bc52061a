"""Checking a document against a JSON Schema, with an error that names the place.

The lab file's JSON Schema (`lab.schema.json`) ships with the package so that
editors can complete and check a lab file as it is typed. The same file
decides here which structure a lab file may have, so the editor and the
command line never disagree about it. This evaluates the subset of JSON
Schema (2020-12) that the lab schema uses, with no library: `type`, `enum`,
`pattern`, `minLength`/`maxLength`, `minimum`/`maximum`, `properties`,
`additionalProperties`, `propertyNames`, `required`, `minProperties`,
`items`, `minItems`/`maxItems`, `uniqueItems`, `anyOf`, `not` and local
`$ref`s. Any other keyword is refused when the schema is loaded, so the
schema cannot silently say more than is checked.

The first problem found (in the document's order) is reported, naming its
place (`links[3].endpoints`) and what would be valid, in the schema's own
words: each `description` is a noun phrase that completes "expected ...".
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

#: a place in a document: keys of mappings and indexes of lists, outermost first
Path = tuple[str | int, ...]

_CHECKED = {"type", "enum", "pattern", "minLength", "maxLength", "minimum", "maximum",
            "properties", "additionalProperties", "propertyNames", "required",
            "minProperties", "items", "minItems", "maxItems", "uniqueItems", "anyOf", "not",
            "$ref"}
_ANNOTATIONS = {"$schema", "$id", "$defs", "$comment", "title", "description", "default",
                "examples"}
_TYPE_WORDS = {"string": "a string", "array": "a list", "object": "a mapping",
               "integer": "a whole number", "number": "a number", "boolean": "true or false",
               "null": "nothing"}
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


class Violation(Exception):
    """The first place where a document breaks its schema, and what is wrong there."""

    def __init__(self, path: Path, message: str) -> None:
        super().__init__(f"{format_path(path) or '(the document)'}: {message}")
        self.path = path
        self.message = message


def format_path(path: Path) -> str:
    """`links[3].endpoints[1]`, `nodes.r1.kind`, `nodes.web.env["A.B"]`."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _BARE_KEY.fullmatch(part):
            out += f".{part}" if out else part
        else:
            out += '["' + part.replace("\\", "\\\\").replace('"', '\\"') + '"]'
    return out


def json_type(value: object) -> str:
    """The JSON type of a parsed value ("integer" for whole numbers that are not bools)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, Sequence):
        return "array"
    if isinstance(value, Mapping):
        return "object"
    return type(value).__name__


def _has_type(value: object, wanted: str) -> bool:
    actual = json_type(value)
    return actual == wanted or (wanted == "number" and actual == "integer")


def show(value: object) -> str:
    """A value as an error message quotes it."""
    if isinstance(value, bool):
        word = "true" if value else "false"
        return (f"{word} (YAML reads yes/no/on/off/true/false as {word}: quote the word "
                "if it is meant as a name)")
    if value is None:
        return "nothing (an empty value)"
    if isinstance(value, str):
        return "an empty string" if not value else repr(value)
    if isinstance(value, int | float):
        return f"the number {value:g}" if isinstance(value, float) else f"the number {value}"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, Sequence):
        return f"a list of {len(value)}"
    return repr(value)


def _same(a: object, b: object) -> bool:
    """JSON equality: true is not 1, and 1.0 is 1."""
    kinds = {json_type(a), json_type(b)}
    return (len(kinds) == 1 or kinds <= {"integer", "number"}) and a == b


def did_you_mean(word: object, choices: Sequence[str]) -> str:
    import difflib  # only when a document is wrong

    close = difflib.get_close_matches(str(word), list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


class Schema:
    """A loaded JSON Schema that checks documents (`check` raises `Violation`)."""

    def __init__(self, document: Mapping[str, Any]) -> None:
        self.root = document
        self._verify(document, "#")

    def _verify(self, schema: object, where: str) -> None:
        """Refuse keywords this evaluator does not check, once, at load."""
        if not isinstance(schema, Mapping):
            return
        unknown = set(schema) - _CHECKED - _ANNOTATIONS
        if unknown:
            raise ValueError(f"schema keyword(s) {sorted(unknown)} at {where} are not checked")
        for key, sub in schema.items():
            if key in ("properties", "$defs"):
                for name, inner in sub.items():
                    self._verify(inner, f"{where}/{key}/{name}")
            elif key in ("anyOf",):
                for i, inner in enumerate(sub):
                    self._verify(inner, f"{where}/{key}/{i}")
            elif isinstance(sub, Mapping):
                self._verify(sub, f"{where}/{key}")

    def check(self, value: object, path: Path = ()) -> None:
        """Raise `Violation` at the first place `value` breaks the schema."""
        problem = self._first(self.root, value, path)
        if problem is not None:
            raise problem

    def is_valid(self, value: object) -> bool:
        return self._first(self.root, value, ()) is None

    # -- evaluation ---------------------------------------------------------------

    def _resolve(self, schema: Mapping[str, Any]) -> Mapping[str, Any]:
        while "$ref" in schema:
            node: Any = self.root
            for part in str(schema["$ref"]).removeprefix("#/").split("/"):
                node = node[part]
            schema = node
        return schema

    def expected(self, schema: Mapping[str, Any]) -> str:
        """What a schema accepts, in words: its description, else its types."""
        schema = self._resolve(schema)
        if "description" in schema:
            return str(schema["description"])
        if "enum" in schema:
            return "one of: " + ", ".join(_word(v) for v in schema["enum"])
        if "anyOf" in schema:
            return " or ".join(self.expected(s) for s in schema["anyOf"])
        types = schema.get("type", [])
        return " or ".join(_TYPE_WORDS.get(t, t) for t in ([types] if isinstance(types, str)
                                                            else types)) or "a value"

    def _first(self, schema: Mapping[str, Any], value: object,
               path: Path) -> Violation | None:
        schema = self._resolve(schema)
        types = schema.get("type")
        if types is not None:
            wanted = [types] if isinstance(types, str) else list(types)
            if not any(_has_type(value, t) for t in wanted):
                return Violation(path, f"expected {self.expected(schema)}, got {show(value)}")
        if "enum" in schema and not any(_same(value, v) for v in schema["enum"]):
            choices = [_word(v) for v in schema["enum"]]
            return Violation(path, f"{show(value)} is not one of: {', '.join(choices)}"
                             f"{did_you_mean(value, choices)}")
        if "anyOf" in schema:
            problem = self._any_of(schema, value, path)
            if problem is not None:
                return problem
        if isinstance(value, str):
            problem = self._string(schema, value, path)
        elif isinstance(value, int | float) and not isinstance(value, bool):
            problem = self._number(schema, value, path)
        elif isinstance(value, Mapping):
            problem = self._object(schema, value, path)
        elif isinstance(value, Sequence):
            problem = self._array(schema, value, path)
        else:
            problem = None
        if problem is None and "not" in schema and self._first(schema["not"], value,
                                                                path) is None:
            banned = self._resolve(schema["not"])
            if set(banned) == {"required"}:
                return Violation(path, "give only one of " + ", ".join(banned["required"]))
            return Violation(path, f"must not be {self.expected(banned)}")
        return problem

    def _any_of(self, schema: Mapping[str, Any], value: object, path: Path) -> Violation | None:
        problems = []
        for branch in schema["anyOf"]:
            problem = self._first(branch, value, path)
            if problem is None:
                return None
            problems.append((branch, problem))
        # the one branch made for this kind of value knows best what is wrong with it
        fitting = [p for b, p in problems if _accepts_type(self._resolve(b), value)]
        if len(fitting) == 1:
            return fitting[0]
        return Violation(path, f"expected {self.expected(schema)}, got {show(value)}")

    def _string(self, schema: Mapping[str, Any], value: str, path: Path) -> Violation | None:
        if "minLength" in schema and len(value) < schema["minLength"]:
            return Violation(path, f"expected {self.expected(schema)}, got {show(value)}")
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            return Violation(path, f"{value[:40]!r} is {len(value)} characters long; at most "
                             f"{schema['maxLength']} are allowed")
        if "pattern" in schema and not re.search(schema["pattern"], value):
            return Violation(path, f"{show(value)} is not {self.expected(schema)}")
        return None

    def _number(self, schema: Mapping[str, Any], value: float, path: Path) -> Violation | None:
        low, high = schema.get("minimum"), schema.get("maximum")
        if (low is not None and value < low) or (high is not None and value > high):
            return Violation(path, f"{show(value)} is out of range: expected "
                             f"{self.expected(schema)}")
        return None

    def _object(self, schema: Mapping[str, Any], value: Mapping[Any, Any],
                path: Path) -> Violation | None:
        known = schema.get("properties", {})
        extra = schema.get("additionalProperties", True)
        names = schema.get("propertyNames")
        for key, item in value.items():
            where = (*path, key)
            if names is not None:
                problem = self._first(names, key, where)
                if problem is not None:
                    return Violation(where, f"{show(key)} is not {self.expected(names)}")
            if key in known:
                problem = self._first(known[key], item, where)
            elif extra is False:
                valid = list(known)
                return Violation(where, f"unknown key {key!r}{did_you_mean(key, valid)}; valid "
                                 f"here: {', '.join(valid)}")
            elif isinstance(extra, Mapping):
                problem = self._first(extra, item, where)
            else:
                problem = None
            if problem is not None:
                return problem
        for key in schema.get("required", []):
            if key not in value:
                return Violation(path, f"{key!r} is missing: expected "
                                 f"{self.expected(known.get(key, {}))}")
        if len(value) < schema.get("minProperties", 0):
            return Violation(path, f"expected {self.expected(schema)}, got an empty mapping")
        return None

    def _array(self, schema: Mapping[str, Any], value: Sequence[Any],
               path: Path) -> Violation | None:
        items = schema.get("items")
        if items is not None:
            for i, item in enumerate(value):
                problem = self._first(items, item, (*path, i))
                if problem is not None:
                    return problem
        if len(value) < schema.get("minItems", 0) or len(value) > schema.get("maxItems",
                                                                             len(value)):
            return Violation(path, f"expected {self.expected(schema)}, got {len(value)} "
                             f"item{'s' if len(value) != 1 else ''}")
        if schema.get("uniqueItems"):
            for i, item in enumerate(value):
                if any(_same(item, other) for other in value[:i]):
                    return Violation((*path, i), f"{show(item)} is given twice")
        return None


def _accepts_type(schema: Mapping[str, Any], value: object) -> bool:
    types = schema.get("type")
    if types is None:
        return False
    return any(_has_type(value, t) for t in ([types] if isinstance(types, str) else types))


def _word(value: object) -> str:
    return value if isinstance(value, str) else str(value).lower()
