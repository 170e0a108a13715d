"""Files attached to a version after it was registered: content-addressed blobs named by a tag.

    version = attach(registry, "digits:3", "explain-background", Path("background.npy"))
    version.tags["attachment.explain-background"]        # the blob's sha256
    path = attachment(registry, version, "explain-background")   # verified, or None

The model's own files stay immutable; an attachment is data about the version (an explainer's
background set), stored once in the blob store and referenced from the version's tags, so
``gc`` keeps it and ``show`` lists it. Attaching again replaces the reference.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from modelport.uri import ModelRef, validate_name

if TYPE_CHECKING:
    from modelport.registry.records import ModelVersion
    from modelport.registry.registry import Registry

PREFIX = "attachment."


def attach(registry: Registry, ref: str | ModelRef, kind: str, path: Path) -> ModelVersion:
    """Store ``path`` as the version's ``kind`` attachment; returns the updated version."""
    validate_name(kind, "attachment kind")
    version = registry.resolve(ref)
    digest, _size = registry.blobs.put_file(path)
    ref = ModelRef(version.name, version=version.version)
    return registry.set_tag(ref, PREFIX + kind, digest, action="attach")


def attachment(registry: Registry, version: ModelVersion, kind: str) -> Path | None:
    """The verified blob of the version's ``kind`` attachment, None when it has none."""
    digest = version.tags.get(PREFIX + kind)
    if digest is None:
        return None
    return registry.blobs.open_verified(digest)


def referenced(tags: dict[str, str] | None) -> set[str]:
    """The blobs a version's tags attach (kept by ``gc``)."""
    return {value for key, value in (tags or {}).items() if key.startswith(PREFIX)}
