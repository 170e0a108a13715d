"""The dashboard in a real browser: Debian's Chromium, headless, driven by Playwright against a
real server. Navigation, alias moves and rollbacks through the confirmation dialog, a stale
page, a forged cross-site form, keyboard reach and phone width."""

from __future__ import annotations

from typing import Any

from modelport.registry.browse import aliases
from tests.ui.conftest import VIEWER_KEY, UiServer

PAGES = [
    "/ui/models",
    "/ui/models/digits",
    "/ui/models/digits/versions/2",
    "/ui/models/digits/compare?a=1&b=2",
]


def where(server: UiServer, name: str, alias: str) -> int | None:
    return {a.alias: a.version for a in aliases(server.registry, name)}.get(alias)


def test_navigate_every_page(ui_server: UiServer, page: Any) -> None:
    page.goto(ui_server.url + "/ui/")
    assert page.url.endswith("/ui/models")
    page.get_by_label("Search").fill("dig")
    page.get_by_role("button", name="Show").click()
    rows = page.locator("table tbody tr")
    assert rows.count() == 1 and "production → 2" in rows.first.inner_text()
    page.get_by_role("link", name="digits", exact=True).click()
    assert page.locator("h1").inner_text() == "Model digits"
    graph = page.locator("svg.graph")
    assert graph.locator("a.node").count() == 5  # digits:1 and its four descendants
    assert "quantize mode=dynamic" in graph.text_content()
    assert page.locator("svg.timeline circle").count() == 3
    page.get_by_role("link", name="version 2", exact=True).first.click()
    assert page.locator("h1").inner_text() == "digits version 2"
    assert page.locator("img.plot").evaluate("img => img.complete && img.naturalWidth") > 0
    page.get_by_role("link", name="Compare with its parent").click()
    assert page.locator("h1").inner_text() == "Compare digits:1 and digits:2"
    plot, report = page.locator("svg.chart").first, page.locator("svg.chart").nth(1)
    assert plot.locator("rect").count() == 6  # accuracy on both, four metrics only v2 has
    assert "0.958" in plot.text_content()
    assert report.locator("rect").count() == 4  # digits:2's report: accuracy, latency vs parent


def test_unknown_model_is_a_404_page(ui_server: UiServer, page: Any) -> None:
    reply = page.goto(ui_server.url + "/ui/models/no-such-model")
    assert reply.status == 404
    assert page.locator("h1").inner_text() == "Not found"
    assert "no-such-model" in page.get_by_role("alert").inner_text()


def confirm(page: Any, button: str) -> str:
    page.get_by_role("button", name=button).click()
    dialog = page.locator("dialog[open]")
    text = dialog.inner_text()
    with page.expect_navigation():  # the page reloads after the toast
        dialog.get_by_role("button", name="Confirm").click()
    return text


def test_move_an_alias_and_roll_it_back(ui_server: UiServer, page: Any) -> None:
    page.goto(ui_server.url + "/ui/models/iris")
    page.get_by_label("Move production to version").fill("2")
    page.get_by_role("button", name="Move production").click()
    dialog = page.locator("dialog[open]")
    assert "from version 1 to version 2" in dialog.inner_text()
    dialog.get_by_role("button", name="Cancel").click()  # cancelled: nothing moves
    assert page.locator("dialog").count() == 0 and where(ui_server, "iris", "production") == 1
    page.get_by_label("Move production to version").fill("2")
    assert "to version 2" in confirm(page, "Move production")
    assert where(ui_server, "iris", "production") == 2
    cell = page.locator("table").first.locator("tbody tr").first
    assert "version 2" in cell.inner_text()
    assert "back from version 2" in confirm(page, "Roll back production")
    assert where(ui_server, "iris", "production") == 1
    events = [e.action for e in ui_server.registry.history("iris", "production")]
    assert events[-2:] == ["alias_set", "rollback"]


def test_a_stale_page_is_told_where_the_alias_is_now(ui_server: UiServer, page: Any) -> None:
    registry = ui_server.registry
    page.goto(ui_server.url + "/ui/models/iris")
    registry.set_alias("iris", "production", 2)  # someone else, after the page loaded
    try:
        page.get_by_label("Move production to version").fill("1")
        page.get_by_role("button", name="Move production").click()
        page.locator("dialog[open]").get_by_role("button", name="Confirm").click()
        banner = page.locator("#stale")
        banner.wait_for(state="visible")
        assert "names version 2 now" in banner.inner_text()
        assert "moved meanwhile" in page.locator("#toast").inner_text()
        assert where(ui_server, "iris", "production") == 2
    finally:
        registry.set_alias("iris", "production", 1)


def test_a_forged_cross_site_form_is_refused(ui_server: UiServer, page: Any) -> None:
    page.goto(ui_server.url + "/ui/models/iris")  # the victim has a dashboard session
    target = ui_server.url + "/ui/api/models/iris/aliases/production"
    hostile = (
        f'<form id="f" method="post" action="{target}"><input name="version" value="2">'
        '<input name="expected" value="1"></form>'
        "<script>document.getElementById('f').submit()</script>"
    )
    page.route(
        "http://attacker.test/**",
        lambda route: route.fulfill(status=200, content_type="text/html", body=hostile),
    )
    with page.expect_response(target) as answer:
        page.goto("http://attacker.test/prize")
    assert answer.value.status == 403
    assert "cross-site request refused" in answer.value.text()
    assert where(ui_server, "iris", "production") == 1


def test_keyboard_reaches_the_action_buttons(ui_server: UiServer, page: Any) -> None:
    page.goto(ui_server.url + "/ui/models/iris")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    reached = []
    for _ in range(40):
        page.keyboard.press("Tab")
        reached.append(page.evaluate("document.activeElement.textContent.trim()"))
        if reached[-1] == "Roll back production":
            break
    assert "Move production" in reached and reached[-1] == "Roll back production"
    outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline != "none"  # a visible focus ring
    page.keyboard.press("Enter")
    dialog = page.locator("dialog[open]")
    assert dialog.is_visible()
    page.keyboard.press("Escape")  # closes without acting
    assert page.locator("dialog").count() == 0 and where(ui_server, "iris", "production") == 1


def test_phone_width_has_no_horizontal_overflow(ui_server: UiServer, page: Any) -> None:
    page.set_viewport_size({"width": 360, "height": 740})
    for path in PAGES:
        page.goto(ui_server.url + path)
        wide = page.evaluate("document.documentElement.scrollWidth")
        assert wide <= 360, f"{path} is {wide}px wide at a 360px viewport"


def test_a_viewer_signs_in_and_sees_no_actions(keyed_server: UiServer, page: Any) -> None:
    reply = page.goto(keyed_server.url + "/ui/models/iris")
    assert reply.status == 401
    page.get_by_label("API key").fill(VIEWER_KEY)
    page.get_by_role("button", name="Sign in").click()
    assert page.url.endswith("/ui/models/iris")
    assert "viewer · infer" in page.locator("header").inner_text()
    assert page.get_by_role("button", name="Move production").count() == 0
    assert "Read-only" in page.locator("main").inner_text()
    page.get_by_role("button", name="Sign out").click()
    assert page.url.endswith("/ui/login")


def test_the_live_chart_helper_draws_series(ui_server: UiServer, page: Any) -> None:
    """``MP.lineChart``, for pages whose charts update live: one path per series, redrawn."""
    page.goto(ui_server.url + "/ui/models")
    drawn = page.evaluate("""() => {
        const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
        document.querySelector("main").append(svg);
        MP.lineChart(svg, [{name: "p50", points: [[0, 1], [1, 3], [2, 2]]},
                           {name: "p99", points: [[0, 4], [1, 9], [2, 5]]}], {unit: "ms"});
        const first = [svg.querySelectorAll("path.line").length, svg.dataset.points,
                       svg.querySelector("path.line").getAttribute("d")];
        MP.lineChart(svg, [{name: "p50", points: [[0, 1], [5, 1]]}]);
        return [...first, svg.querySelectorAll("path.line").length, svg.textContent];
    }""")
    paths, points, d, redrawn, text = drawn
    assert paths == 2 and points == "6" and d.startswith("M") and d.count("L") == 2
    assert redrawn == 1 and "ms" not in text  # the second call replaced the first drawing
