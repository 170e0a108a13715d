"""The registry: names, immutable versions, movable aliases, lineage, blobs.

    from modelport.registry import Registry
    with Registry.open("~/.modelport") as registry:
        version = registry.resolve("digits@production")

Names load on first use, so a module that needs only a light part of the package (blobs, records,
the read-only ``reader``) does not import SQLAlchemy with it.
"""

from modelport._lazy import lazy

_LAZY = {
    "Artifact": "modelport.registry.artifact",
    "Event": "modelport.registry.records",
    "FileEntry": "modelport.registry.records",
    "GcReport": "modelport.registry.records",
    "ModelSummary": "modelport.registry.records",
    "ModelVersion": "modelport.registry.records",
    "Problem": "modelport.registry.records",
    "Registry": "modelport.registry.registry",
}
__all__ = sorted(_LAZY)

__getattr__, __dir__ = lazy(__name__, _LAZY)
