"""The dashboard's screenshots in docs/images: a registry with lineage and alias history served
by ``UiApp``, photographed by Debian's Chromium (headless, Playwright), saved as small PNGs.

    .venv/bin/python examples/dashboard_screenshots.py [--out docs/images]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.ui.conftest import fill, running  # noqa: E402


def shrink(path: Path) -> None:
    """A palette PNG: a third of the size of the browser's, the same to the eye."""
    from PIL import Image

    with Image.open(path) as image:
        image.convert("RGB").quantize(colors=128, dither=Image.Dither.NONE).save(
            path, optimize=True
        )


def main() -> None:
    from playwright.sync_api import sync_playwright

    from modelport.registry import Registry
    from modelport.settings import Settings
    from modelport.ui import UiApp

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="shots-"))
    registry = Registry(Settings(home=work / "home", user="alice"))
    fill(registry, work)
    shots = {
        "dashboard-models": ("/ui/models", None),
        "dashboard-model": ("/ui/models/digits", None),
        "dashboard-version": ("/ui/models/digits/versions/2", None),
        "dashboard-compare": ("/ui/models/digits/compare?a=1&b=2", None),
        "dashboard-confirm": ("/ui/models/digits", "confirm"),
        "dashboard-stale": ("/ui/models/digits", "stale"),
        "dashboard-phone": ("/ui/models/digits", "phone"),
    }
    with running(UiApp(registry)) as url, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium",
                                             args=["--no-sandbox"])  # fmt: skip
        for name, (path, what) in shots.items():
            phone = what == "phone"
            page = browser.new_page(viewport={"width": 390 if phone else 1100, "height": 900})
            page.goto(url + path)
            if what in ("confirm", "stale"):
                page.get_by_label("Move production to version").fill("4")
                if what == "stale":
                    registry.set_alias("digits", "production", 3)
                page.get_by_role("button", name="Move production").click()
            if what == "stale":
                page.locator("dialog[open]").get_by_role("button", name="Confirm").click()
                page.locator("#stale").wait_for(state="visible")
                registry.set_alias("digits", "production", 2)
            target = args.out / f"{name}.png"
            page.screenshot(path=str(target), full_page=what is None or phone)
            page.close()
            shrink(target)
            print(f"{target.relative_to(ROOT)}: {target.stat().st_size // 1024} KiB")
        browser.close()
    registry.close()


if __name__ == "__main__":
    main()
