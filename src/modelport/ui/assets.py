"""The dashboard's static files, shipped in the package (``modelport/ui/static``), held in memory.

    found = load()                       # {"app.css": Asset(...), "app.js": Asset(...)}
    found["app.js"].url                  # "/ui/static/app.js?v=3fa2c1d0e4b5": the hash busts caches
    serve(found, "app.js", headers)      # 200, or 304 for a matching If-None-Match

Nothing is fetched at run time: no CDN, no build step; the files are hand-written.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources

from modelport.ui.page import Reply

TYPES = {
    ".css": b"text/css; charset=utf-8",
    ".js": b"text/javascript; charset=utf-8",
    ".svg": b"image/svg+xml",
    ".png": b"image/png",
}


@dataclass(frozen=True)
class Asset:
    name: str
    data: bytes
    etag: bytes

    @property
    def url(self) -> str:
        return f"/ui/static/{self.name}?v={self.etag.decode().strip(chr(34))}"


def load() -> dict[str, Asset]:
    found = {}
    for item in resources.files("modelport.ui").joinpath("static").iterdir():
        suffix = "." + item.name.rpartition(".")[2]
        if item.is_file() and suffix in TYPES:
            data = item.read_bytes()
            etag = b'"%s"' % hashlib.sha256(data).hexdigest()[:12].encode()
            found[item.name] = Asset(item.name, data, etag)
    return found


def serve(found: dict[str, Asset], name: str, headers: dict[bytes, bytes]) -> Reply:
    asset = found.get(name)
    if asset is None:
        return 404, b"no such file", [(b"content-type", b"text/plain")]
    common = [(b"etag", asset.etag), (b"cache-control", b"public, max-age=31536000, immutable")]
    if headers.get(b"if-none-match") == asset.etag:
        return 304, b"", common
    kind = TYPES["." + name.rpartition(".")[2]]
    return 200, asset.data, [(b"content-type", kind), *common]
