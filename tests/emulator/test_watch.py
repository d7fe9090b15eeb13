"""Watch semantics: resourceVersions, history, selectors, bookmarks, initial events, timeouts."""

from __future__ import annotations

from itertools import islice

from kubegate.emulator import harness
from tests.emulator.conftest import Raw, cm

CMS = "/api/v1/namespaces/default/configmaps"


def test_watch_from_a_version_replays_only_later_events(raw: Raw) -> None:
    _, first = raw.request("POST", CMS, cm("a"))
    raw.request("POST", CMS, cm("b"))
    raw.request("DELETE", f"{CMS}/a")
    events = list(islice(raw.watch(f"{CMS}?watch=1&resourceVersion={first['metadata']['resourceVersion']}"), 2))
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [("ADDED", "b"), ("DELETED", "a")]
    assert int(events[1]["object"]["metadata"]["resourceVersion"]) > int(events[0]["object"]["metadata"]["resourceVersion"])


def test_watch_without_version_starts_with_current_state(raw: Raw) -> None:
    raw.request("POST", CMS, cm("a"))
    event = next(raw.watch(f"{CMS}?watch=true"))
    assert (event["type"], event["object"]["metadata"]["name"], event["object"]["kind"]) == ("ADDED", "a", "ConfigMap")


def test_compacted_version_is_gone(raw: Raw, fresh_upstream: harness.RunningEmulator) -> None:
    _, obj = raw.request("POST", CMS, cm("a"))
    raw.request("PUT", f"{CMS}/a", {**obj, "data": {"x": "1"}})
    fresh_upstream.call(fresh_upstream.emulator.store.compact)
    event = next(raw.watch(f"{CMS}?watch=1&resourceVersion={obj['metadata']['resourceVersion']}"))
    assert event["type"] == "ERROR"
    assert (event["object"]["code"], event["object"]["reason"]) == (410, "Expired")


def test_history_limit_expires_old_versions(tmp_path: object) -> None:
    emu = harness.start(history=3)
    try:
        raw = Raw(emu, emu.admin_token)
        _, first = raw.request("POST", CMS, cm("first"))
        for i in range(5):
            raw.request("POST", CMS, cm(f"n{i}"))
        event = next(raw.watch(f"{CMS}?watch=1&resourceVersion={first['metadata']['resourceVersion']}"))
        assert event["object"]["code"] == 410
    finally:
        emu.stop()


def test_label_selector_turns_relabels_into_added_and_deleted(raw: Raw) -> None:
    _, obj = raw.request("POST", CMS, cm("a", {"tier": "web"}))
    stream = raw.watch(f"{CMS}?watch=1&labelSelector=tier%3Dweb&resourceVersion={obj['metadata']['resourceVersion']}")
    raw.request("PATCH", f"{CMS}/a", {"metadata": {"labels": {"tier": "db"}}},
                content_type="application/merge-patch+json")
    raw.request("PATCH", f"{CMS}/a", {"metadata": {"labels": {"tier": "web"}}},
                content_type="application/merge-patch+json")
    raw.request("POST", CMS, cm("other", {"tier": "db"}))
    raw.request("DELETE", f"{CMS}/a")
    assert [e["type"] for e in islice(stream, 3)] == ["DELETED", "ADDED", "DELETED"]


def test_field_selector_watch(raw: Raw) -> None:
    _, obj = raw.request("POST", CMS, cm("x"))
    stream = raw.watch(f"{CMS}?watch=1&fieldSelector=metadata.name%3Dy&resourceVersion={obj['metadata']['resourceVersion']}")
    raw.request("POST", CMS, cm("z"))
    raw.request("POST", CMS, cm("y"))
    event = next(stream)
    assert event["object"]["metadata"]["name"] == "y"


def test_send_initial_events_ends_with_a_marked_bookmark(raw: Raw) -> None:
    raw.request("POST", CMS, cm("a"))
    raw.request("POST", CMS, cm("b"))
    events = list(islice(raw.watch(f"{CMS}?watch=1&sendInitialEvents=true&allowWatchBookmarks=true"
                                   "&resourceVersionMatch=NotOlderThan"), 3))
    assert [e["type"] for e in events] == ["ADDED", "ADDED", "BOOKMARK"]
    assert events[2]["object"]["metadata"]["annotations"] == {"k8s.io/initial-events-end": "true"}


def test_bookmarks_arrive_while_idle() -> None:
    emu = harness.start(bookmark_interval=0.2)
    try:
        raw = Raw(emu, emu.admin_token)
        _, obj = raw.request("POST", CMS, cm("a"))
        event = next(raw.watch(f"{CMS}?watch=1&allowWatchBookmarks=true&resourceVersion={obj['metadata']['resourceVersion']}"))
        assert event["type"] == "BOOKMARK"
        assert int(event["object"]["metadata"]["resourceVersion"]) >= int(obj["metadata"]["resourceVersion"])
    finally:
        emu.stop()


def test_timeout_seconds_ends_the_stream(raw: Raw) -> None:
    _, obj = raw.request("POST", CMS, cm("a"))
    events = list(raw.watch(f"{CMS}?watch=1&timeoutSeconds=1&resourceVersion={obj['metadata']['resourceVersion']}"))
    assert events == []  # the server closed the stream by itself, with nothing to report
