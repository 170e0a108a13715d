"""The dashboard with 1,000 and 10,000 versions of a model: the browser's own paint and load
timings, paging to the end, and the JSON API's latency, beside loading every version at once.

    .venv/bin/python benchmarks/ui.py [--loads 7] [--calls 200]

A registry (SQLite) gets ``big1k`` (1,000 versions, each derived from the one before, 100 alias
moves) and ``big10k`` (10,000 versions) through ``Registry.add``; ``modelport ui`` serves it as
its own process; Debian's Chromium (headless, Playwright) loads each model page ``--loads``
times in fresh contexts (no cache) and reads ``performance`` (paint entries, navigation timing).
The reference is what a page that loads every version does: ``Registry.list_versions`` as JSON,
and the same versions table rendered whole, loaded by the same browser.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.conftest import make_mlp_onnx  # noqa: E402

console = Console(width=140)
TIMING = """() => {
  const nav = performance.getEntriesByType("navigation")[0];
  const paint = Object.fromEntries(performance.getEntriesByType("paint")
                                   .map(p => [p.name, p.startTime]));
  return {fp: paint["first-paint"], fcp: paint["first-contentful-paint"],
          response: nav.responseEnd, interactive: nav.domInteractive,
          dcl: nav.domContentLoadedEventEnd,
          load: nav.loadEventEnd, bytes: nav.transferSize,
          rows: document.querySelectorAll("table tbody tr").length};
}"""


def build(home: Path, small: int, large: int) -> float:
    from modelport.importers.onnx import from_path
    from modelport.registry import Registry
    from modelport.settings import Settings

    started = time.perf_counter()
    home.parent.mkdir(parents=True, exist_ok=True)
    artifact = from_path(make_mlp_onnx(home.parent / "tiny.onnx"))
    transforms = ("quantize", "prune", "distill", "convert", "bundle")
    with Registry(Settings(home=home, user="bench")) as registry:
        registry.add(artifact, "big1k", metrics={"accuracy": 0.9})
        for n in range(2, small + 1):
            registry.add(
                artifact,
                "big1k",
                parent=f"big1k:{n - 1}",
                transform=transforms[n % 5],
                transform_params={"step": n},
                metrics={"accuracy": 0.9 - n * 1e-5, "size_bytes": 500 + n},
            )
        for k in range(100):
            registry.set_alias("big1k", "production" if k % 2 else "staging", 1 + k * small // 100)
        for _ in range(large):
            registry.add(artifact, "big10k", metrics={"accuracy": 0.9})
        registry.set_alias("big10k", "production", large // 2)
    return time.perf_counter() - started


def start(home: Path) -> tuple[subprocess.Popen, str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "NO_COLOR": "1", "MODELPORT_API_KEYS": ""}
    command = [sys.executable, "-m", "modelport", "--home", str(home), "ui", "--port", "0"]
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
    )
    line = process.stdout.readline()
    if not line.startswith("dashboard on "):
        raise SystemExit(f"modelport ui did not start: {line}{process.communicate()[0]}")
    return process, line.split()[2].removesuffix(";").removesuffix("/ui")


def browser_loads(
    base: str, paths: dict[str, str], loads: int, reference: dict[str, str], reference_html: str
) -> dict[str, list[dict]]:
    """Timings of ``loads`` cold loads of each page; ``reference`` pages are answered with
    ``reference_html`` (the page's own CSS and JS still come from the server)."""
    from playwright.sync_api import sync_playwright

    found: dict[str, list[dict]] = {}
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path="/usr/bin/chromium", args=["--no-sandbox"]
        )
        for label, path in {**paths, **reference}.items():
            cold, warm = [], []
            for i in range(loads + 1):  # the first round warms the server; not counted
                context = chromium.new_context(viewport={"width": 1280, "height": 900})
                page = context.new_page()
                if label in reference:
                    page.route(
                        base + path,
                        lambda route: route.fulfill(
                            status=200, content_type="text/html", body=reference_html
                        ),
                    )
                page.goto(base + path, wait_until="load")
                first = page.evaluate(TIMING)
                page.goto(base + path, wait_until="load")  # again: CSS and JS from the cache
                if i:
                    cold.append(first)
                    warm.append(page.evaluate(TIMING))
                context.close()
            found[label] = cold
            found[label + ", cached assets"] = warm
        chromium.close()
    return found


def api_latency(base: str, paths: dict[str, str], calls: int) -> dict[str, list[float]]:
    found = {}
    with httpx.Client(base_url=base, timeout=30) as client:
        for label, path in paths.items():
            client.get(path).raise_for_status()
            times = []
            for _ in range(calls):
                t0 = time.perf_counter()
                client.get(path).raise_for_status()
                times.append((time.perf_counter() - t0) * 1000)
            found[label] = times
    return found


def everything_at_once(home: Path, name: str, rounds: int = 5) -> tuple[list[float], str]:
    """The reference: every version in one call (as a page that loads them all would), as
    JSON, and the whole versions table rendered in the dashboard's layout."""
    import orjson

    from modelport.registry import Registry
    from modelport.settings import Settings
    from modelport.ui.app import UiApp
    from modelport.ui.page import Request, User
    from modelport.ui.pages.model import versions_table

    times = []
    with Registry(Settings(home=home, user="bench")) as registry:
        for _ in range(rounds):
            t0 = time.perf_counter()
            orjson.dumps([v.to_dict() for v in registry.list_versions(name)])
            times.append((time.perf_counter() - t0) * 1000)
        app = UiApp(registry)
        request = Request(
            "GET", f"/models/{name}", {}, {}, b"", app.ctx, User(None, "admin", False), "x"
        )
        body = versions_table(name, tuple(reversed(registry.list_versions(name))))
        html = request.page(f"Model {name} (every version)", body)[1].decode()
    return times, html


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loads", type=int, default=5, help="browser loads per page")
    parser.add_argument("--calls", type=int, default=200, help="API calls per route")
    parser.add_argument("--small", type=int, default=1000)
    parser.add_argument("--large", type=int, default=10_000)
    parser.add_argument("--home", type=Path, help="a registry this script built before: reuse it")
    args = parser.parse_args()
    if args.home is not None:
        home = args.home
    else:
        home = Path(tempfile.mkdtemp(prefix="bench-ui-")) / "home"
        built = build(home, args.small, args.large)
        console.print(f"registered {args.small + args.large:,} versions in {built:.1f} s")
    started_load = load_average()
    process, base = start(home)
    big10k, middle = "/ui/api/models/big10k", args.large // 2
    try:
        pages = {
            "big1k model page": "/ui/models/big1k",
            "big10k model page": "/ui/models/big10k",
            "big10k oldest page (after=0)": "/ui/models/big10k?after=0",
            "big10k middle page": f"/ui/models/big10k?before={args.large // 2}",
            "big1k version page": f"/ui/models/big1k/versions/{args.small // 2}",
            "models page": "/ui/models",
        }
        all_times, all_html = everything_at_once(home, "big10k")
        reference = {"big10k, every version in one page (reference)": "/ui/reference/all"}
        loads = browser_loads(base, pages, args.loads, reference, all_html)
        api = api_latency(
            base,
            {
                "GET /ui/api/models/big1k": "/ui/api/models/big1k",
                "GET .../big1k/versions?limit=50": "/ui/api/models/big1k/versions?limit=50",
                "GET .../big10k/versions?before=middle": f"{big10k}/versions?before={middle}",
                "GET .../big10k/versions?after=0": "/ui/api/models/big10k/versions?after=0",
                "GET .../big1k/history?limit=200": "/ui/api/models/big1k/history",
                "GET .../big1k/versions/N": f"/ui/api/models/big1k/versions/{args.small // 2}",
                "GET .../big1k/compare?a=1&b=N": f"/ui/api/models/big1k/compare?a=1&b={args.small}",
                "GET /ui/api/models?q=big": "/ui/api/models?q=big",
            },
            args.calls,
        )
    finally:
        process.terminate()
        process.communicate(timeout=30)
    console.print(f"load average at the start: {started_load}, at the end: {load_average()}")
    report(loads, api, all_times, args)


def report(loads: dict, api: dict, all_times: list[float], args: argparse.Namespace) -> None:
    table = Table(title=f"browser timing, ms (median / max of {args.loads} loads in new contexts)")
    for col in (
        "page",
        "rows",
        "HTML received",
        "first paint",
        "first contentful",
        "DOM interactive",
        "DOMContentLoaded end",
        "load end",
        "bytes",
    ):
        table.add_column(col, justify="left" if col == "page" else "right")
    for label, runs in loads.items():

        def cell(key: str, runs: list = runs) -> str:
            values = [r[key] for r in runs if r[key] is not None]
            return f"{statistics.median(values):.0f} / {max(values):.0f}" if values else "-"

        table.add_row(
            label,
            str(runs[0]["rows"]),
            cell("response"),
            cell("fp"),
            cell("fcp"),
            cell("interactive"),
            cell("dcl"),
            cell("load"),
            f"{runs[0]['bytes']:,}",
        )
    console.print(table)
    calls = Table(title=f"JSON API over HTTP, ms ({args.calls} sequential calls per route)")
    for col in ("route", "p50", "p95", "p99", "max"):
        calls.add_column(col, justify="left" if col == "route" else "right")
    for label, times in api.items():
        calls.add_row(
            label, *(f"{quantile(times, q):.2f}" for q in (0.5, 0.95, 0.99)), f"{max(times):.2f}"
        )
    calls.add_row(
        "reference: list_versions(big10k) as JSON, in process",
        f"{statistics.median(all_times):.0f}",
        "-",
        "-",
        f"{max(all_times):.0f}",
    )
    console.print(calls)


if __name__ == "__main__":
    main()
