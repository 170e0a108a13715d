from modelport.registry.artifact import Artifact
from modelport.registry.records import (
    Event,
    FileEntry,
    GcReport,
    ModelSummary,
    ModelVersion,
    Problem,
)
from modelport.registry.registry import Registry

__all__ = [
    "Artifact",
    "Event",
    "FileEntry",
    "GcReport",
    "ModelSummary",
    "ModelVersion",
    "Problem",
    "Registry",
]
