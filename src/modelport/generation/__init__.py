"""Language models: an engine per version (backend + tokenizer + chat template + scheduler).

    from modelport.generation import EngineOptions, SamplingParams, open_engine
    engine = open_engine(path, "gguf", EngineOptions(slots=4))

Not the tensor ``Runtime`` protocol: generation streams tokens and keeps per-sequence state.
Backends are imported only when a model of their format opens.
"""

from __future__ import annotations

from modelport.generation.base import SamplingParams, TokenEvent
from modelport.generation.engine import Engine, open_engine
from modelport.generation.options import EngineOptions

__all__ = ["Engine", "EngineOptions", "SamplingParams", "TokenEvent", "open_engine"]
