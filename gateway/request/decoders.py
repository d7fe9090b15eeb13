"""JSON and YAML bodies read the way kube-apiserver's Go decoders read them, or refused.

kube-apiserver decodes JSON with `sigs.k8s.io/json` (case-sensitive; integers kept as int64 when
they fit, else float64; duplicate keys are a strict-decoding error, the last one wins otherwise)
and YAML by converting it to JSON with `sigs.k8s.io/yaml` (go-yaml v2, YAML 1.1-ish) first.
Python's `json` and PyYAML differ from those in ways a rule could be walked around with: PyYAML
reads `0o0` as a string that Go reads as the integer 0, `y` as a string Go reads as true; it
expands anchors and merge keys; Python's `json` accepts `NaN` and unpaired surrogates. So:

- what both read the same is decoded here into the value Go produces (numbers included: an
  integral float such as `1e3` is the integer 1000 to the apiserver, as it round-trips JSON);
- plain YAML scalars are resolved by go-yaml v2's own rules (modelled below: its bool and null
  words, Go's ParseInt with base prefixes, `_` and leading-zero octals, its float forms);
- what Go reads differently, or what we do not want to guess at, is refused (`DecodeError`):
  duplicate keys, anchors and aliases, merge keys, explicit tags, several YAML documents,
  non-scalar, null or float keys, NaN and infinities, invalid UTF-8 and unpaired surrogates.

The cross-decoder tests (tests/gateway/request/test_decoders.py) feed the same bytes to these
readers and to Go's, and assert that they agree or that we refuse.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any, Iterator

import yaml

INT64 = (-(2**63), 2**63 - 1)


class DecodeError(ValueError):
    """The body cannot be read the way kube-apiserver reads it."""


# -- JSON ---------------------------------------------------------------------------------------

def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        seen: set[str] = set()
        dup = next(k for k, _ in pairs if k in seen or seen.add(k))  # type: ignore[func-returns-value]
        raise DecodeError(f"duplicate key {dup!r} (kube-apiserver keeps only the last one)")
    return out


# Only these can make Python's reading differ from Go's once the text parsed: a \u escape (an
# unpaired surrogate), a long digit run (beyond int64), a big exponent (overflow). Bodies without
# any skip the walk over every value.
_NEEDS_WALK = re.compile(rb"\\u|[0-9]{19}|[eE][-+]?[0-9]{3}")


def _no_constant(name: str) -> Any:
    raise DecodeError(f"{name} is not JSON (Go refuses it)")


def _go_number(value: Any) -> Any:
    """A number as it comes out of sigs.k8s.io/json: int64 when it fits, else float64."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return value
    if isinstance(value, int):
        return value if INT64[0] <= value <= INT64[1] else float(value)
    if math.isinf(value) or math.isnan(value):
        raise DecodeError("a number is out of range")
    return value


def _check_text(text: str) -> None:
    if any(0xD800 <= ord(c) <= 0xDFFF for c in text):
        raise DecodeError("a string holds an unpaired UTF-16 surrogate (Go reads it as U+FFFD)")


def _walk(value: Any) -> Any:
    if isinstance(value, dict):
        for key in value:
            _check_text(key)
        return {k: _walk(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_walk(v) for v in value]
    if isinstance(value, str):
        _check_text(value)
        return value
    return _go_number(value)


def read_json(data: bytes) -> Any:
    """JSON as `sigs.k8s.io/json` decodes it into an interface{}, or DecodeError."""
    try:
        text = data.decode("utf-8")
        value = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constant)
    except UnicodeDecodeError as e:
        raise DecodeError(f"the body is not valid UTF-8 ({e.reason} at byte {e.start})") from None
    except json.JSONDecodeError as e:
        raise DecodeError(str(e)) from None
    return _walk(value) if _NEEDS_WALK.search(data) else value


# -- YAML ---------------------------------------------------------------------------------------

_BOOLS = {**dict.fromkeys(("y", "Y", "yes", "Yes", "YES", "true", "True", "TRUE", "on", "On", "ON"), True),
          **dict.fromkeys(("n", "N", "no", "No", "NO", "false", "False", "FALSE", "off", "Off", "OFF"), False)}
_NULLS = frozenset(("", "~", "null", "Null", "NULL"))
_SPECIAL_FLOATS = frozenset(f"{sign}.{word}" for sign in ("", "+", "-")
                            for word in ("inf", "Inf", "INF", "nan", "NaN", "NAN"))
# go-yaml v2's yamlStyleFloat, and the float forms Go's ParseFloat takes after a leading '.'.
_YAML_FLOAT = re.compile(r"^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$")
# (Go's ParseFloat takes `_` between digits: `.5_5` is 0.55, `._5` is no number.)
_DOT_FLOAT = re.compile(r"^\.[0-9](_?[0-9])*([eE][-+]?[0-9](_?[0-9])*)?$")
_GO_INT = re.compile(r"^([-+]?)(0[xX][0-9a-fA-F]+|0[oO][0-7]+|0[bB][01]+|0[0-7]*|[1-9][0-9]*)$")


def _go_parse_int(text: str) -> int | None:
    """Go's strconv.ParseInt(text, 0, 64), falling back to ParseUint as go-yaml does; None if both fail."""
    m = _GO_INT.match(text)
    if m is None:
        return None
    sign, digits = m.groups()
    lower = digits.lower()
    if lower.startswith(("0x", "0o", "0b")):
        value = int(lower[2:], {"x": 16, "o": 8, "b": 2}[lower[1]])
    elif len(digits) > 1 and digits.startswith("0"):
        value = int(digits, 8)  # a leading zero is octal to Go's base 0
    else:
        value = int(digits)
    value = -value if sign == "-" else value
    if INT64[0] <= value <= INT64[1]:
        return value
    if sign != "-" and value < 2**64:
        return value  # ParseUint
    return None


def _resolve_plain(text: str) -> Any:
    """A plain (unquoted, untagged) scalar as go-yaml v2's resolve() reads it, after the JSON round
    trip YAMLToJSON makes. Its hint is the first character: a digit or sign (int, float, or a
    timestamp kept as text), a '.' (float), or a word from its table (bool, null, .inf)."""
    if text in _NULLS:
        return None
    if text in _BOOLS:
        return _BOOLS[text]
    if text in _SPECIAL_FLOATS:
        raise DecodeError(f"the YAML value {text!r} is not representable in JSON (Go refuses it)")
    if text.startswith("."):
        return _json_float(float(text.replace("_", ""))) if _DOT_FLOAT.match(text) else text
    if not text or text[0] not in "+-0123456789":
        return text
    if re.match(r"^[0-9]{4}-", text):
        return text  # a timestamp or not: go-yaml v2 keeps date-shaped text as text in an interface{}
    plain = text.replace("_", "")
    if (as_int := _go_parse_int(plain)) is not None:
        return _go_number(as_int)
    if _YAML_FLOAT.match(plain):
        value = float(plain)
        return text if math.isinf(value) else _json_float(value)  # Go's ParseFloat fails on overflow
    return text


def _json_float(value: float) -> Any:
    """A float64 after YAMLToJSON's JSON round trip: integral values below 1e21 print as integers."""
    if math.isinf(value) or math.isnan(value):
        raise DecodeError("a YAML number is out of range")
    if value == int(value) and abs(value) < 1e21:
        return _go_number(int(value))
    return value


def _key(value: Any, where: str) -> str:
    """A mapping key as YAMLToJSON turns it into a JSON object key."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    raise DecodeError(f"{where}: a YAML key of type {type(value).__name__} has no JSON form "
                      "kubegate reads the way Go does")


class _Events:
    def __init__(self, data: bytes) -> None:
        # libyaml's parser where PyYAML has it (the same events, many times faster).
        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
        self._it: Iterator[Any] = iter(yaml.parse(data, Loader=loader))

    def next(self) -> Any:
        return next(self._it)


def _where(event: Any) -> str:
    mark = getattr(event, "start_mark", None)
    return f"line {mark.line + 1}" if mark is not None else "the body"


def _node(events: _Events, first: Any) -> Any:
    where = _where(first)
    if isinstance(first, yaml.AliasEvent) or getattr(first, "anchor", None):
        raise DecodeError(f"{where}: YAML anchors and aliases are not accepted (parsers expand them differently)")
    if getattr(first, "tag", None):
        raise DecodeError(f"{where}: explicit YAML tags ({first.tag}) are not accepted")
    if isinstance(first, yaml.ScalarEvent):
        if not first.style and first.implicit[0]:  # plain ("" from libyaml, None from PyYAML)
            return _resolve_plain(first.value)
        _check_text(first.value)
        return first.value
    if isinstance(first, yaml.SequenceStartEvent):
        items = []
        while not isinstance(event := events.next(), yaml.SequenceEndEvent):
            items.append(_node(events, event))
        return items
    if isinstance(first, yaml.MappingStartEvent):
        out: dict[str, Any] = {}
        while not isinstance(event := events.next(), yaml.MappingEndEvent):
            if not isinstance(event, yaml.ScalarEvent):
                raise DecodeError(f"{_where(event)}: a YAML key must be a scalar")
            if event.value == "<<" and not event.style:
                raise DecodeError(f"{_where(event)}: YAML merge keys (<<) are not accepted")
            raw_key = _node(events, event)
            if raw_key is None:
                raise DecodeError(f"{_where(event)}: a YAML key is null (Go refuses it)")
            key = _key(raw_key, _where(event))
            if key in out:
                raise DecodeError(f"{_where(event)}: duplicate key {key!r} "
                                  "(kube-apiserver keeps only the last one)")
            out[key] = _node(events, events.next())
        return out
    raise DecodeError(f"{where}: unexpected YAML event {type(first).__name__}")


def read_yaml(data: bytes) -> Any:
    """YAML as `sigs.k8s.io/yaml` + `sigs.k8s.io/json` decode it into an interface{}, or DecodeError."""
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DecodeError(f"the body is not valid UTF-8 ({e.reason} at byte {e.start})") from None
    try:
        events = _Events(data)
        events.next()  # StreamStart
        start = events.next()
        if isinstance(start, yaml.StreamEndEvent):
            return None
        value = _node(events, events.next())
        events.next()  # DocumentEnd
        if not isinstance(events.next(), yaml.StreamEndEvent):
            raise DecodeError("the body holds several YAML documents; kube-apiserver reads only the first")
    except yaml.YAMLError as e:
        raise DecodeError(f"the body is not YAML: {e}") from None
    return value
