"""The dashboard over plain HTTP (httpx against a real server): its JSON API, the bad inputs,
API keys and roles, CSRF refusals and stale alias moves."""

from __future__ import annotations

import re

import httpx
import pytest

from modelport.registry import Registry
from modelport.registry.browse import aliases
from tests.ui.conftest import ADMIN_KEY, VIEWER_KEY, UiServer


def session(server: UiServer, path: str = "/ui/models") -> tuple[httpx.Client, str]:
    """A client holding the dashboard's session cookie, and the page's CSRF token."""
    client = httpx.Client(base_url=server.url, follow_redirects=False, timeout=10)
    page = client.get(path)
    token = re.search(r'name="csrf-token" content="([0-9a-f]+)"', page.text)
    assert token is not None, page.text[:500]
    return client, token.group(1)


def where(registry: Registry, name: str, alias: str) -> int | None:
    """The version ``alias`` names now, read from the catalogue (None: no such alias)."""
    return {a.alias: a.version for a in aliases(registry, name)}.get(alias)


def test_models_api_searches_sorts_and_pages(ui_server: UiServer) -> None:
    get = httpx.Client(base_url=ui_server.url).get
    everything = get("/ui/api/models").json()
    assert everything["total"] == 3
    assert [m["name"] for m in everything["items"]] == ["digits", "empty-model", "iris"]
    digits = everything["items"][0]
    assert digits["latest"] == 5 and digits["versions"] == 5
    assert digits["aliases"]["production"] == 2
    assert [m["name"] for m in get("/ui/api/models?q=IR").json()["items"]] == ["iris"]
    by_count = get("/ui/api/models?sort=versions&order=desc").json()["items"]
    assert [m["name"] for m in by_count] == ["digits", "iris", "empty-model"]
    second = get("/ui/api/models?limit=1&offset=1").json()
    assert second["total"] == 3 and [m["name"] for m in second["items"]] == ["empty-model"]
    assert get("/ui/api/models?q=%25").json()["total"] == 0  # a LIKE wildcard is a plain char


@pytest.mark.parametrize(
    "query",
    ["sort=size", "limit=0", "limit=501", "offset=-1", "limit=abc"],
)
def test_bad_model_queries_are_400(ui_server: UiServer, query: str) -> None:
    reply = httpx.get(f"{ui_server.url}/ui/api/models?{query}")
    assert reply.status_code == 400
    assert reply.json()["error"]


def test_versions_are_paged_by_key(ui_server: UiServer) -> None:
    get = httpx.Client(base_url=ui_server.url).get
    first = get("/ui/api/models/digits/versions?limit=2").json()
    assert [v["version"] for v in first["items"]] == [5, 4]
    assert first["total"] == 5 and first["older"] == 4 and first["newer"] is None
    older = get("/ui/api/models/digits/versions?limit=2&before=4").json()
    assert [v["version"] for v in older["items"]] == [3, 2] and older["newer"] == 3
    oldest = get("/ui/api/models/digits/versions?limit=2&after=0").json()
    assert [v["version"] for v in oldest["items"]] == [2, 1] and oldest["older"] is None
    assert get("/ui/api/models/digits/versions?before=4&after=1").status_code == 400


def test_unknown_model_or_version_is_a_404_page(ui_server: UiServer) -> None:
    client = httpx.Client(base_url=ui_server.url)
    for path in (
        "/ui/models/nope",
        "/ui/models/digits/versions/99",
        "/ui/models/digits/versions/x1",
        "/ui/models/%3Cscript%3E",
        "/ui/models/digits/compare?a=1&b=99",
        "/ui/nowhere",
    ):
        reply = client.get(path)
        assert reply.status_code == 404, path
        assert reply.headers["content-type"].startswith("text/html")
        assert "<h1>Not found</h1>" in reply.text and "Traceback" not in reply.text
        assert "<script>" not in reply.text.split("</head>")[1]
    api = client.get("/ui/api/models/nope")
    assert api.status_code == 404 and "not found" in api.json()["error"]
    assert "did you mean" in client.get("/ui/api/models/digit").json()["error"]


def test_version_compare_and_attachment_api(ui_server: UiServer) -> None:
    client = httpx.Client(base_url=ui_server.url)
    version = client.get("/ui/api/models/digits/versions/2").json()
    assert version["transform"] == "quantize" and version["parent"] == "digits:1"
    assert version["children"] == ["digits:4"] and "report-plot" in version["attachments"]
    plot = client.get("/ui/api/models/digits/versions/2/attachments/report-plot")
    assert plot.headers["content-type"] == "image/png" and plot.content.startswith(b"\x89PNG")
    assert client.get("/ui/api/models/digits/versions/2/attachments/nope").status_code == 404
    found = client.get("/ui/api/models/digits/compare?a=1&b=2").json()
    accuracy = next(m for m in found["metrics"] if m["name"] == "accuracy")
    assert accuracy["a"] == 0.962 and accuracy["b"] == 0.958
    assert accuracy["delta"] == pytest.approx(-0.004)
    assert {"parent", "transform", "transform_params", "sha256"} <= set(found["differs"])
    assert client.get("/ui/api/models/digits/compare?a=1").status_code == 400


def test_a_move_with_the_session_token_is_applied_and_audited(ui_server: UiServer) -> None:
    registry = ui_server.registry
    client, token = session(ui_server, "/ui/models/iris")
    reply = client.post(
        "/ui/api/models/iris/aliases/production",
        json={"version": 2, "expected": 1},
        headers={"X-CSRF-Token": token},
    )
    assert reply.status_code == 200, reply.text
    assert reply.json()["version"] == 2 and where(registry, "iris", "production") == 2
    entry = registry.audit.entries(action="alias_set", model="iris")[-1]
    assert entry.actor == "unauthenticated" and entry.source.startswith("127.0.0.1:")
    back = client.post(
        "/ui/api/models/iris/aliases/production/rollback",
        json={"expected": 2},
        headers={"X-CSRF-Token": token},
    )
    assert back.status_code == 200 and where(registry, "iris", "production") == 1


def test_a_stale_move_is_409_with_the_current_state(ui_server: UiServer) -> None:
    registry = ui_server.registry
    client, token = session(ui_server, "/ui/models/iris")
    registry.set_alias("iris", "stale", 1)
    registry.set_alias("iris", "stale", 2)  # moved by someone else after the page loaded
    for path, body in (
        ("stale", {"version": 1, "expected": 1}),
        ("stale/rollback", {"expected": 1}),
    ):
        reply = client.post(
            f"/ui/api/models/iris/aliases/{path}", json=body, headers={"X-CSRF-Token": token}
        )
        assert reply.status_code == 409
        assert reply.json()["current"] == 2 and reply.json()["expected"] == 1
        assert "moved meanwhile" in reply.json()["error"]
        assert where(registry, "iris", "stale") == 2
    fresh = client.post(
        "/ui/api/models/iris/aliases",
        json={"alias": "stale", "version": 1, "expected": None},
        headers={"X-CSRF-Token": token},
    )
    assert fresh.status_code == 409 and fresh.json()["current"] == 2  # it exists already


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b"{not json", 400),
        (b"[1, 2]", 400),
        (b'{"version": "abc", "expected": 1}', 400),
        (b'{"version": 2}', 400),  # no 'expected': the page always says what it saw
        (b'{"version": 0, "expected": 1}', 400),
        (b'{"version": 99, "expected": 1}', 404),
        (b"x" * 70_000, 413),
    ],
)
def test_bad_action_bodies_change_nothing(ui_server: UiServer, body: bytes, status: int) -> None:
    client, token = session(ui_server)
    reply = client.post(
        "/ui/api/models/iris/aliases/production",
        content=body,
        headers={"X-CSRF-Token": token, "Content-Type": "application/json"},
    )
    assert reply.status_code == status and reply.json()["error"]
    assert where(ui_server.registry, "iris", "production") == 1


def test_forged_cross_site_requests_are_refused(ui_server: UiServer) -> None:
    registry = ui_server.registry
    client, token = session(ui_server)
    other, other_token = session(ui_server)
    move = "/ui/api/models/iris/aliases/production"
    body = {"version": 2, "expected": 1}
    attempts = [
        {"Origin": "http://evil.example", "X-CSRF-Token": token},
        {"Sec-Fetch-Site": "cross-site", "X-CSRF-Token": token},
        {"Sec-Fetch-Site": "same-site", "X-CSRF-Token": token},
        {},  # same origin, the cookie, but no token
        {"X-CSRF-Token": other_token},  # another session's token
    ]
    for headers in attempts:
        reply = client.post(move, json=body, headers=headers)
        assert reply.status_code == 403, headers
        assert where(registry, "iris", "production") == 1
    form = httpx.post(ui_server.url + move, data={"version": "2", "expected": "1"})  # no cookie
    assert form.status_code == 403 and where(registry, "iris", "production") == 1
    assert other.get("/ui/models").status_code == 200


def test_keys_viewers_read_and_admin_acts(keyed_server: UiServer) -> None:
    registry = keyed_server.registry
    anonymous = httpx.Client(base_url=keyed_server.url)
    assert anonymous.get("/ui/api/models").status_code == 401
    page = anonymous.get("/ui/models")
    assert page.status_code == 401 and 'action="/ui/login"' in page.text
    viewer = {"X-API-Key": VIEWER_KEY}
    assert anonymous.get("/ui/api/models", headers=viewer).status_code == 200
    move = "/ui/api/models/iris/aliases/production"
    denied = anonymous.post(move, json={"version": 2, "expected": 1}, headers=viewer)
    assert denied.status_code == 403 and "'admin' role" in denied.json()["error"]
    assert where(registry, "iris", "production") == 1
    assert registry.audit.entries(action="admin_denied")[-1].actor == "viewer"
    admin = {"Authorization": f"Bearer {ADMIN_KEY}"}  # a header key needs no CSRF token
    done = anonymous.post(move, json={"version": 2, "expected": 1}, headers=admin)
    assert done.status_code == 200 and where(registry, "iris", "production") == 2
    assert registry.audit.entries(action="alias_set", model="iris")[-1].actor == "ops"
    registry.set_alias("iris", "production", 1)


def test_signing_in_keeps_the_key_server_side(keyed_server: UiServer) -> None:
    client, token = session(keyed_server, "/ui/login")
    wrong = client.post("/ui/login", data={"key": "not-a-key-at-all", "csrf": token})
    assert wrong.status_code == 401 and "not valid" in wrong.text
    no_token = client.post("/ui/login", data={"key": VIEWER_KEY})
    assert no_token.status_code == 403
    signed = client.post(
        "/ui/login", data={"key": VIEWER_KEY, "csrf": token, "next": "/ui/models/iris"}
    )
    assert signed.status_code == 303 and signed.headers["location"] == "/ui/models/iris"
    cookie = signed.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and VIEWER_KEY not in cookie
    page = client.get("/ui/models/iris")
    assert page.status_code == 200 and "viewer · infer" in page.text
    assert "Read-only" in page.text and "Move production" not in page.text
    token = re.search(r'name="csrf-token" content="([0-9a-f]+)"', page.text).group(1)
    refused = client.post(
        "/ui/api/models/iris/aliases/production",
        json={"version": 2, "expected": 1},
        headers={"X-CSRF-Token": token},
    )
    assert refused.status_code == 403 and where(keyed_server.registry, "iris", "production") == 1
    out = client.post("/ui/logout", data={"csrf": token})
    assert out.status_code == 303
    assert client.get("/ui/models").status_code == 401


def test_static_files_are_cached_by_hash(ui_server: UiServer) -> None:
    page = httpx.get(ui_server.url + "/ui/models").text
    src = re.search(r'src="(/ui/static/app\.js\?v=[0-9a-f]+)"', page).group(1)
    js = httpx.get(ui_server.url + src)
    assert js.status_code == 200 and "MP.api" in js.text
    assert js.headers["content-type"].startswith("text/javascript")
    again = httpx.get(ui_server.url + src, headers={"If-None-Match": js.headers["etag"]})
    assert again.status_code == 304
    assert httpx.get(ui_server.url + "/ui/static/nope.js").status_code == 404
    policy = httpx.get(ui_server.url + "/ui/models").headers["content-security-policy"]
    assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy


def test_a_form_posted_without_javascript_moves_and_redirects(ui_server: UiServer) -> None:
    client, token = session(ui_server, "/ui/models/iris")
    form = {"csrf": token, "next": "/ui/models/iris", "version": "2", "expected": "1"}
    reply = client.post("/ui/api/models/iris/aliases/production", data=form)
    assert reply.status_code == 303 and reply.headers["location"] == "/ui/models/iris"
    assert where(ui_server.registry, "iris", "production") == 2
    back = {"csrf": token, "next": "https://elsewhere.example/", "expected": "2"}
    reply = client.post("/ui/api/models/iris/aliases/production/rollback", data=back)
    assert reply.status_code == 303 and reply.headers["location"] == "/ui/models"  # not away
    assert where(ui_server.registry, "iris", "production") == 1
    stale = client.post("/ui/api/models/iris/aliases/production", data={**form, "expected": "2"})
    assert stale.status_code == 409 and "It names <strong>version 1</strong> now" in stale.text


def test_the_version_page_shows_the_stored_report(ui_server: UiServer) -> None:
    page = httpx.get(ui_server.url + "/ui/models/digits/versions/2").text
    report = page.split("Report against its parent")[1].split("<h2>")[0]
    assert "latency_ms_b1" in report and "0.034" in report and "0.021" in report
    assert '<svg class="chart"' in report
