"""Every file the dashboard serves ships in the wheel, and nothing in it reaches off the machine."""

from __future__ import annotations

import fnmatch
import re
import tomllib
from importlib import resources
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def static_files() -> list[str]:
    folder = resources.files("modelport.ui").joinpath("static")
    return sorted(item.name for item in folder.iterdir() if item.is_file())


def test_every_static_file_is_package_data() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    globs = config["tool"]["setuptools"]["package-data"]["modelport.ui"]
    files = static_files()
    assert {"app.css", "app.js", "model.js"} <= set(files)
    for name in files:
        assert any(fnmatch.fnmatch(f"static/{name}", g) for g in globs), name


def test_no_asset_names_another_host() -> None:
    folder = resources.files("modelport.ui").joinpath("static")
    for name in static_files():
        text = folder.joinpath(name).read_text()
        urls = re.findall(r"(?:https?:)?//[A-Za-z0-9.-]+\.[A-Za-z]{2,}", text)
        assert urls in ([], ["http://www.w3.org"]), (name, urls)  # the SVG namespace is a name
        assert "@import" not in text and "url(http" not in text
