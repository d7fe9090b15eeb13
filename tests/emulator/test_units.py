"""Selectors and patches on their own."""

from __future__ import annotations

import pytest

from kubegate.emulator import patch, selectors


@pytest.mark.parametrize(("text", "labels", "matches"), [
    pytest.param("a=b", {"a": "b"}, True, id="eq"),
    pytest.param("a==b", {"a": "c"}, False, id="double-eq"),
    pytest.param("a!=b", {}, True, id="neq-missing"),
    pytest.param("a in (x, y),b", {"a": "y", "b": ""}, True, id="in-and-exists"),
    pytest.param("a notin (x)", {}, True, id="notin-missing"),
    pytest.param("!a", {"a": "1"}, False, id="not-exists"),
    pytest.param("n>3", {"n": "4"}, True, id="gt"),
    pytest.param("example.com/tier=web", {"example.com/tier": "web"}, True, id="prefixed-key"),
])
def test_label_selector(text: str, labels: dict[str, str], matches: bool) -> None:
    sel = selectors.parse_labels(text)
    assert sel is not None and sel.matches(labels) is matches


@pytest.mark.parametrize("text", ["a in (b", "a=b)", "=b", "a=in valid", "a>x"])
def test_label_selector_errors(text: str) -> None:
    with pytest.raises(selectors.SelectorError):
        selectors.parse_labels(text)


def test_field_selector_on_nested_fields() -> None:
    sel = selectors.parse_fields("status.phase=Running,spec.nodeName!=n1")
    assert sel is not None
    assert sel.matches({"status": {"phase": "Running"}, "spec": {"nodeName": "n2"}})
    assert not sel.matches({"status": {"phase": "Running"}, "spec": {"nodeName": "n1"}})


def test_json_patch_operations() -> None:
    doc = {"a": [1, 2], "b": {"c": 1}}
    out = patch.json_patch(doc, [
        {"op": "add", "path": "/a/-", "value": 3},
        {"op": "remove", "path": "/b/c"},
        {"op": "copy", "from": "/a/0", "path": "/b/d"},
        {"op": "move", "from": "/a/1", "path": "/e"},
        {"op": "test", "path": "/e", "value": 2},
        {"op": "add", "path": "/a~1x", "value": 0},
    ])
    assert out == {"a": [1, 3], "b": {"d": 1}, "e": 2, "a/x": 0}
    assert doc == {"a": [1, 2], "b": {"c": 1}}  # the input is untouched


@pytest.mark.parametrize("ops", [
    [{"op": "remove", "path": "/missing"}],
    [{"op": "test", "path": "/a", "value": 2}],
    [{"op": "replace", "path": "/a/5", "value": 1}],
    [{"op": "jump", "path": "/a"}],
    {"op": "add"},
])
def test_json_patch_errors(ops: object) -> None:
    with pytest.raises(patch.PatchError):
        patch.json_patch({"a": [1]}, ops)


def test_merge_patch_deletes_with_null() -> None:
    assert patch.merge_patch({"a": 1, "b": {"c": 2, "d": 3}}, {"a": None, "b": {"c": None}}) == {"b": {"d": 3}}


def test_strategic_merge_directives() -> None:
    pod = {"spec": {"containers": [{"name": "a", "image": "1"}, {"name": "b", "image": "1"}],
                    "finalizers": ["x", "y"]}}
    out = patch.strategic_merge(pod, {"spec": {
        "$setElementOrder/containers": [{"name": "a"}, {"name": "b"}],
        "containers": [{"name": "b", "image": "2"}, {"name": "a", "$patch": "delete"}],
        "$deleteFromPrimitiveList/finalizers": ["x"],
    }})
    assert out == {"spec": {"containers": [{"name": "b", "image": "2"}], "finalizers": ["y"]}}
