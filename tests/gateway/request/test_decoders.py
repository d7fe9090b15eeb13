"""Cross-decoder tests: the same bytes through the gateway's readers and through kube-apiserver's Go code.

Go's side is tests/go/decode, built from Debian's Go and the golang-k8s-sigs-{json,yaml}-dev
sources: `net/url.ParseQuery` + `Values.Encode`, `sigs.k8s.io/json`, `sigs.k8s.io/yaml`. Every case
says what the gateway must do: read it exactly as Go does ("agree"), or refuse it ("refuse") where
Go would read it differently from what a Python reader would, or not at all.
"""

from __future__ import annotations

import base64
import json
import subprocess
from typing import Any, Callable, Iterator

import pytest

from kubegate.gateway.errors import Denial
from kubegate.gateway.request import bodies, decoders
from kubegate.gateway.request.query import Query
from tests.go_programs import binary

P = pytest.param


class GoDecoder:
    """tests/go/decode, one process for the module, a JSON line per case."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen([str(binary("decode"))], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True)

    def __call__(self, mode: str, data: bytes) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps({"mode": mode, "input": base64.b64encode(data).decode()}) + "\n")
        self.proc.stdin.flush()
        answer: dict[str, Any] = json.loads(self.proc.stdout.readline())
        return answer

    def close(self) -> None:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.close()
        self.proc.wait(10)  # started here, ends when its input does
        self.proc.stdout.close()


@pytest.fixture(scope="module")
def go() -> Iterator[GoDecoder]:
    decoder = GoDecoder()
    yield decoder
    decoder.close()


def same(ours: Any, theirs: Any) -> bool:
    """Equal as JSON values, with numbers compared by value and never equal to booleans."""
    if isinstance(ours, bool) or isinstance(theirs, bool):
        return type(ours) is type(theirs) and ours == theirs
    if isinstance(ours, (int, float)) and isinstance(theirs, (int, float)):
        return float(ours) == float(theirs)
    if isinstance(ours, dict) and isinstance(theirs, dict):
        return ours.keys() == theirs.keys() and all(same(ours[k], theirs[k]) for k in ours)
    if isinstance(ours, list) and isinstance(theirs, list):
        return len(ours) == len(theirs) and all(same(a, b) for a, b in zip(ours, theirs))
    return type(ours) is type(theirs) and ours == theirs


def check(mode: str, reader: Callable[[bytes], Any], go: GoDecoder, data: bytes, expect: str) -> None:
    theirs = go(mode, data)
    try:
        ours = reader(data)
    except decoders.DecodeError as e:
        assert expect == "refuse", f"refused ({e}) what Go reads as {theirs}"
        return
    assert expect == "agree", f"read {ours!r}, expected a refusal; Go: {theirs}"
    assert theirs["ok"] and not theirs.get("strict"), f"we read {ours!r}; Go: {theirs}"
    assert same(ours, theirs.get("value")), f"we read {ours!r}; Go reads {theirs.get('value')!r}"


@pytest.mark.parametrize(("text", "expect"), [
    P('{"a": 1, "b": [true, null, "x"]}', "agree", id="plain"),
    P('{"spec": {"replicas": 0}}', "agree", id="replicas-0"),
    P('{"replicas": 1.0}', "agree", id="float-one"),
    P('{"replicas": 1e3}', "agree", id="exponent"),
    P('{"replicas": -0}', "agree", id="negative-zero"),
    P('{"n": 9223372036854775807}', "agree", id="int64-max"),
    P('{"n": 9223372036854775808}', "agree", id="beyond-int64-is-float"),
    P('{"n": 12345678901234567890123}', "agree", id="huge-int"),
    P('{"Replicas": 0, "replicas": 3}', "agree", id="case-sensitive-keys"),
    P('{"s": "caf\\u00e9 \\ud83d\\ude00"}', "agree", id="escapes-and-pair"),
    P('{"a": {"b": {"c": [1, [2, [3]]]}}}', "agree", id="nested"),
    P('  {"a": 1}\n', "agree", id="whitespace-around"),
    P('{"spec": {"replicas": 3, "replicas": 0}}', "refuse", id="duplicate-key"),
    P('{"a": 1, "a": 1}', "refuse", id="duplicate-same-value"),
    P('{"a": NaN}', "refuse", id="nan"),
    P('{"a": Infinity}', "refuse", id="infinity"),
    P('{"a": -Infinity}', "refuse", id="minus-infinity"),
    P('{"a": 1e400}', "refuse", id="float-overflow"),
    P('{"s": "\\ud800"}', "refuse", id="unpaired-surrogate"),
    P('{"\\udc00": 1}', "refuse", id="unpaired-surrogate-key"),
    P('{"a": 1}{"b": 2}', "refuse", id="two-values"),
    P('{"a": 1,}', "refuse", id="trailing-comma"),
    P("{'a': 1}", "refuse", id="single-quotes"),
])
def test_json(go: GoDecoder, text: str, expect: str) -> None:
    check("json", decoders.read_json, go, text.encode(), expect)


@pytest.mark.parametrize(("data", "expect"), [
    P(b'\xef\xbb\xbf{"a": 1}', "refuse", id="utf8-bom"),
    P(b'{"s": "\xff"}', "refuse", id="invalid-utf8"),
    P('{"a": 1}'.encode("utf-16"), "refuse", id="utf16"),
])
def test_json_bytes(go: GoDecoder, data: bytes, expect: str) -> None:
    check("json", decoders.read_json, go, data, expect)


YAML_AGREE = [
    "a: 1", "a: 0", "a: -0", "a: +12", "a: 0o10", "a: 0O7", "a: 010", "a: 09", "a: 0x1F", "a: +0x10",
    "a: 0b101", "a: -0b11", "a: 0B11", "a: 1_000", "a: 1__0", "a: 0_", "a: 0.1_0", "a: 3.14159_26",
    "a: 1.", "a: .5", "a: 1e3", "a: 1E3", "a: 1.0e+3", "a: 2.5", "a: -2.5e-3", "a: 12345678901234567890",
    "a: 123456789012345678901234", "a: 1e400", "a: 0o", "a: 0x", "a: _1", "a: 1:20", "a: 190:20:30",
    "a: 1.2.3", "a: 2001-12-14", "a: 2001-12-14T21:59:43.10-05:00", "a: 2001-12-14 21:59:43.10",
    "a: 1234-5", "a: y", "a: Y", "a: n", "a: yes", "a: No", "a: on", "a: Off", "a: TRUE", "a: false",
    "a: ~", "a: null", "a: NULL", "a:", "a: ''", 'a: "0o10"', "a: '010'", "a: \"y\"", "a: x y z",
    "a: +", "a: .", "a: ._5", "a: .5_5", "a: ._", "a: .5e1_0", "a: 1_.5", "a: 1._5", "a: 1e1_0",
    "a: 0x_1", "a: 0_x1", "a: 1_e3", "a: .5e3", "a: |\n  x\n  y\n", "a: >\n  x\n  y\n",
    "a: [1, 0x10, y, '1']", "a: {b: 0o1, c: [on]}", "a:\n  - b\n  - c: d\n", "on: 1", "y: 1", "1: a",
    "0x10: a", "010: a", "1.0: a", "true: a", "2001-12-14: a", "'y': 1",
    '{"apiVersion": "apps/v1", "kind": "Deployment", "spec": {"replicas": 0}}',
    "spec:\n  replicas: 0o0\n", "spec:\n  replicas: 0x0\n", "a: \"\\u00e9\"",
    "---\na: 1\n", "a: 1\n...\n", "",
]
YAML_REFUSE = [
    "a: .inf", "a: -.Inf", "a: +.INF", "a: .nan", "a: .NaN",
    "a: &x 1\nb: *x\n", "base: &b {replicas: 3}\nspec:\n  <<: *b\n  replicas: 0\n", "<<: {a: 1}\n",
    "a: !!str 1", "a: !!int '7'", "a: !custom x", "!!map {a: 1}",
    "a: 1\na: 2\n", "spec:\n  replicas: 3\n  replicas: 0\n", "on: 1\ntrue: 2\n", "1: a\n01: b\n",
    "a: 1\n---\nb: 2\n", "? [a]\n: 1\n", "? {a: 1}\n: 1\n", "~: 1", "1.5: a", "a: \"\\ud800\"",
    "a: [1, 2\n", "a: 'x", "a: -", "a: !\n", "a: ! x\n",
]


@pytest.mark.parametrize("text", [P(t, id=t[:40] or "empty") for t in YAML_AGREE])
def test_yaml_read_as_go_reads_it(go: GoDecoder, text: str) -> None:
    check("yaml", decoders.read_yaml, go, text.encode(), "agree")


@pytest.mark.parametrize("text", [P(t, id=t[:40]) for t in YAML_REFUSE])
def test_yaml_go_reads_differently_is_refused(go: GoDecoder, text: str) -> None:
    check("yaml", decoders.read_yaml, go, text.encode(), "refuse")


QUERY_AGREE = [
    "", "a=1", "a=1&b=2", "a=", "a", "a=1&&b=2", "&a=1", "a=1&", "a=b=c", "a=%20x", "a=+x+", "a=%2B",
    "labelSelector=app+in+%28web%2Cdb%29", "labelSelector=app%20in%20(web)", "fieldSelector=metadata.name%3Dx",
    "command=sh&command=-c&command=ls+-l", "dryRun=All&dryRun=All", "a=%C3%A9", "a%5B0%5D=1", "=1", "z=1&a=2",
    "watch=&resourceVersion=0", "a=~-._", "a=%7E", "a=%2f%2F", "limit=500&continue=abc%3D%3D",
]
# Go drops these pairs (ParseQuery's error): what the apiserver runs is not what a reader of the
# raw string would judge.
QUERY_GO_DROPS = ["a=1;b=2", "a;b=1", "fieldSelector=metadata.name%3Dnone;", ";", "a=1&b=2;", "a=%zz", "a=%2",
                  "a=%", "%zz=1", "labelSelector=app%3Dx%G0"]
# Go keeps these, but reads them in a way no gate should have to guess at: several values of a
# scalar option (the apiserver takes the first), bytes that are no UTF-8 text, control characters,
# and integers the apiserver would refuse.
QUERY_AMBIGUOUS = ["a=%ff", "a=%C3", "a=%00", "a=%0A", "labelSelector=a&labelSelector=b", "watch=1&watch=0",
                   "limit=1x", "limit=", "timeoutSeconds=1.5"]


@pytest.mark.parametrize("raw", [P(q, id=q or "empty") for q in QUERY_AGREE])
def test_query_read_and_encoded_as_go_does(go: GoDecoder, raw: str) -> None:
    theirs = go("query", raw.encode())
    ours = Query.parse(raw)
    assert theirs["ok"], theirs
    assert {k: list(v) for k, v in ours.params} == (theirs["value"] or {})
    assert ours.encode() == (theirs.get("encoded") or "")  # what the gateway forwards is Go's encoding


@pytest.mark.parametrize(("raw", "go_drops"), [P(q, True, id=q) for q in QUERY_GO_DROPS]
                         + [P(q, False, id=q) for q in QUERY_AMBIGUOUS])
def test_query_go_reads_differently_is_refused(go: GoDecoder, raw: str, go_drops: bool) -> None:
    theirs = go("query", raw.encode())
    assert theirs["ok"] is not go_drops, theirs
    with pytest.raises(Denial) as err:
        Query.parse(raw)
    assert err.value.code == 400


# -- protobuf -----------------------------------------------------------------------------------
# Bodies built field by field, so each case can do what kubectl never does and an attacker might.

def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def field(num: int, value: int | bytes | str) -> bytes:
    if isinstance(value, int):
        return varint(num << 3) + varint(value)
    data = value.encode() if isinstance(value, str) else value
    return varint(num << 3 | 2) + varint(len(data)) + data


def labels(num: int, items: dict[str, str]) -> bytes:
    return b"".join(field(num, field(1, k) + field(2, v)) for k, v in items.items())


def deployment(*parts: bytes) -> bytes:
    envelope = field(1, field(1, "apps/v1") + field(2, "Deployment")) + field(2, b"".join(parts))
    return b"k8s\x00" + envelope


META = field(1, field(1, "web") + field(3, "prod"))
SELECTOR = field(2, labels(1, {"app": "web"}))
TEMPLATE = field(3, field(1, labels(11, {"app": "web"})) + field(2, field(2, field(1, "c") + field(2, "nginx"))))


def spec(*parts: bytes) -> bytes:
    return field(2, b"".join(parts))


PROTO_CASES = [
    P(deployment(META, spec(field(1, 2), SELECTOR, TEMPLATE)), 2, id="plain"),
    P(deployment(META, spec(field(1, 0), SELECTOR, TEMPLATE)), 0, id="replicas-0"),
    P(deployment(META, spec(field(1, 2**32), SELECTOR)), 0, id="int32-wraps-to-0"),
    P(deployment(META, spec(field(1, 2**32 + 5), SELECTOR)), 5, id="int32-low-bits"),
    P(deployment(META, spec(field(1, 2**31), SELECTOR)), -2**31, id="int32-negative"),
    P(deployment(META, spec(field(1, 2**64 - 1), SELECTOR)), -1, id="int32-all-ones"),
    P(deployment(META, spec(field(1, 3), field(1, 0), SELECTOR)), 0, id="scalar-twice-last-wins"),
    P(deployment(META, spec(field(1, 3), SELECTOR), spec(field(1, 0))), 0, id="spec-twice-merged"),
    P(deployment(META, spec(field(1, 0)), spec(SELECTOR, TEMPLATE)), 0, id="spec-twice-replicas-kept"),
    P(deployment(META, spec(field(1, 0), SELECTOR), META, spec(TEMPLATE)), 0, id="meta-and-spec-twice"),
    P(deployment(field(1, labels(11, {"a": "1"})), field(1, labels(11, {"b": "2", "a": "3"})), spec(field(1, 1))), 1,
      id="labels-merged-across-metadata"),
    P(deployment(META, spec(field(1, 1), field(3, field(2, field(2, field(1, "a")) + field(2, field(1, "b")))),
                            field(3, field(2, field(2, field(1, "c")))))), 1, id="containers-appended-across-merge"),
    P(deployment(META, spec(field(1, 1), field(3, field(2, field(4, 2**64 - 30))), SELECTOR)), 1,
      id="int64-negative"),
]


@pytest.mark.parametrize(("body", "replicas"), PROTO_CASES)
def test_protobuf_read_as_go_reads_it(go: GoDecoder, body: bytes, replicas: int) -> None:
    theirs = go("proto", body)
    assert theirs["ok"] and not theirs.get("unknown"), theirs
    ours = bodies.read("application/vnd.kubernetes.protobuf", body)
    assert ours.readable, ours.error
    assert ours.obj is not None
    obj = {k: v for k, v in ours.obj.items() if k not in ("apiVersion", "kind")}
    assert same(obj, theirs["value"]), f"we read {obj!r}; Go reads {theirs['value']!r}"
    assert ours.obj["spec"]["replicas"] == replicas


@pytest.mark.parametrize("body", [
    P(deployment(META, spec(field(1, 1), field(99, 7))), id="unknown-spec-field"),
    P(deployment(META, spec(field(1, 1)), field(77, "x")), id="unknown-top-field"),
    P(deployment(field(1, field(1, "web") + field(40, "x")), spec(field(1, 1))), id="unknown-metadata-field"),
    P(deployment(META, spec(field(1, 0), field(3, field(2, field(2, field(1, "c") + field(50, "x")))))),
      id="unknown-container-field"),
    P(deployment(META, spec(field(1, b"\x01"))), id="replicas-wrong-wire-type"),
])
def test_protobuf_go_reads_partially_is_unreadable(go: GoDecoder, body: bytes) -> None:
    theirs = go("proto", body)
    assert theirs["ok"] and theirs.get("unknown"), theirs  # Go skips the field: a partial object
    ours = bodies.read("application/vnd.kubernetes.protobuf", body)
    assert not ours.readable, ours


@pytest.mark.parametrize("body", [
    P(deployment(META, spec(field(1, 1)))[:-1], id="truncated"),
    P(deployment(META, field(2, b"\x08")), id="truncated-varint"),
    P(b"k8s\x00" + field(1, field(1, "apps/v1") + field(2, "Deployment")) + field(2, field(2, b"\xff")), id="bad-length"),
])
def test_protobuf_go_refuses_is_unreadable(go: GoDecoder, body: bytes) -> None:
    # (A field with the wrong wire type is an error to k8s.io/api's generated code, and skipped as
    # unknown by gogo's table-driven decoder used here: not a full reading either way.)
    theirs = go("proto", body)
    assert not theirs["ok"], theirs
    assert not bodies.read("application/vnd.kubernetes.protobuf", body).readable
