"""The query string read the way kube-apiserver reads it, or refused; and re-encoded for forwarding.

kube-apiserver's handlers read only `req.URL.Query()`: Go's `url.ParseQuery`, which splits on `&`
alone, DROPS every pair that contains `;` (Go >= 1.17), drops pairs whose escapes are invalid,
turns `+` into a space, and keeps every value of a repeated key; options then take the FIRST value
of a scalar field. Python's parsers differ on each point, and a gate that judged one reading while
the apiserver executes another can be walked around. So the query is parsed once, here, with
Go's rules; what Go would silently drop or read ambiguously is refused with a 400; and what is
forwarded is this parse re-encoded as Go's `url.Values.Encode` writes it (keys sorted, values in
order), never the raw string: the apiserver executes exactly what the gates judged.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import quote_plus

from ..errors import Denial

# Parameters whose Go option field is a list: every value counts, and repeating them is normal.
LIST_VALUED = frozenset({
    "dryRun",     # Create/Update/Patch/DeleteOptions.DryRun []string
    "command",    # PodExecOptions.Command []string (kubectl exec -- a b c)
    "ports",      # PodPortForwardOptions.Ports []int32
})
# Integer options: a value Go cannot parse makes the apiserver refuse the request, so we do first.
INTEGER = frozenset({"limit", "timeoutSeconds", "gracePeriodSeconds", "sinceSeconds", "tailLines",
                     "limitBytes"})
_INT = re.compile(r"^[+-]?[0-9]+$")
_HEX = frozenset("0123456789abcdefABCDEF")


def _bad(message: str) -> Denial:
    return Denial(400, f"kubegate: {message}; the request was not forwarded", "BadRequest")


def _unescape(text: str, what: str) -> str:
    """Go's `url.QueryUnescape`: `+` is a space, `%XX` a byte; any other `%` is an error."""
    if "%" not in text and "+" not in text:
        return text
    out = bytearray()
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == "%":
            pair = text[i + 1:i + 3]
            if len(pair) != 2 or not set(pair) <= _HEX:
                raise _bad(f"the query {what} {text!r} has an invalid %-escape, which kube-apiserver "
                           "would drop")
            out.append(int(pair, 16))
            i += 3
        elif c == "+":
            out.append(0x20)
            i += 1
        else:
            out += c.encode()
            i += 1
    try:
        return out.decode("utf-8")
    except UnicodeDecodeError:
        raise _bad(f"the query {what} {text!r} is not valid UTF-8 once unescaped") from None


def apimachinery_bool(values: list[str] | None) -> bool:
    """apimachinery's `Convert_Slice_string_To_bool`: absent is false; the first value `0` or
    `false` (any case) is false; ANY other value, the empty string included, is true."""
    if not values:
        return False
    return values[0].lower() not in ("0", "false")


@dataclass(frozen=True)
class Query:
    """A query string as Go parsed it: keys in first-seen order, each with its values in order."""

    params: tuple[tuple[str, tuple[str, ...]], ...] = ()

    @classmethod
    def parse(cls, raw: str) -> "Query":
        seen: dict[str, list[str]] = {}
        for pair in raw.split("&") if raw else ():
            if ";" in pair:
                raise _bad(f"the query pair {pair!r} contains ';', which kube-apiserver drops "
                           "(Go's url.ParseQuery): write it without ';'")
            if pair == "":
                continue  # `a=1&&b=2`: Go skips empty pairs too
            key, _, value = pair.partition("=")
            key = _unescape(key, "key")
            value = _unescape(value, "value")
            if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in key + value):
                raise _bad(f"the query parameter {key!r} contains control characters")
            seen.setdefault(key, []).append(value)
        for key, values in seen.items():
            if len(values) > 1 and key not in LIST_VALUED:
                raise _bad(f"the query parameter {key!r} is given more than once; kube-apiserver would "
                           "read only the first value")
            if key in INTEGER and not _INT.match(values[0]):
                raise _bad(f"the query parameter {key}={values[0]!r} is not an integer")
        return cls(tuple((k, tuple(v)) for k, v in seen.items()))

    def __contains__(self, key: str) -> bool:
        return any(k == key for k, _ in self.params)

    def values(self, key: str) -> list[str]:
        for k, vs in self.params:
            if k == key:
                return list(vs)
        return []

    def get(self, key: str, default: str = "") -> str:
        """The first value, as Go's `Values.Get` and apimachinery's scalar conversion read it."""
        vs = self.values(key)
        return vs[0] if vs else default

    def flag(self, key: str) -> bool:
        """A boolean option (`watch`, `follow`, `orphanDependents`…) as kube-apiserver reads it."""
        return apimachinery_bool(self.values(key))

    def selector(self, key: str) -> str:
        """A selector as it selects: blank and whitespace select everything, as no selector does."""
        return self.get(key).strip()

    @property
    def dry_run(self) -> bool:
        """`dryRun=All` (the only value kube-apiserver accepts; others are refused at classify)."""
        return "All" in self.values("dryRun")

    def without(self, *keys: str) -> "Query":
        return Query(tuple((k, v) for k, v in self.params if k not in keys))

    def with_value(self, key: str, value: str) -> "Query":
        """KEY set to VALUE alone (replacing what it had)."""
        return Query(self.without(key).params + ((key, (value,)),))

    def encode(self) -> str:
        """Go's `url.Values.Encode`: keys sorted, each value `QueryEscape`d, `&`-joined."""
        return "&".join(f"{quote_plus(k, safe='')}={quote_plus(v, safe='')}"
                        for k, vs in sorted(self.params) for v in vs)
