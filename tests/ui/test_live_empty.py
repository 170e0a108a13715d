"""The live pages under ``modelport ui`` (the registry alone, no ServingApp): no Serving page;
Monitoring, Fleet and Rollouts say there is nothing, not an error."""

from __future__ import annotations

from typing import Any

import httpx


def test_registry_only_dashboard_says_what_it_lacks(ui_server: Any, page: Any) -> None:
    """No ServingApp: no Serving page; Monitoring, Fleet and Rollouts say there is nothing."""
    assert page.goto(ui_server.url + "/ui/serving").status == 404
    page.goto(ui_server.url + "/ui/monitoring")
    assert page.locator("#no-monitor").is_visible()
    assert "Serving" not in page.locator("header nav").inner_text()
    page.goto(ui_server.url + "/ui/fleet")
    text = page.locator("main").inner_text()
    assert "No device is enrolled" in text and "No deployment yet" in text
    page.goto(ui_server.url + "/ui/rollouts")
    assert "No rollout yet" in page.locator("main").inner_text()
    api = httpx.get(ui_server.url + "/ui/api/monitoring").json()
    assert api == {"serving": False, "versions": [], "history": {}, "accuracy": [], "skipped": 0}
    assert httpx.get(ui_server.url + "/ui/api/fleet").json()["deployment"] is None
