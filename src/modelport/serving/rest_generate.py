"""The Open Inference Protocol's generate extension: text in, text out, streamed or not.

    POST /v2/models/smol/generate          {"text_input": "Hi", "parameters": {"max_tokens": 8}}
    -> {"model_name": "smol", "model_version": "1", "text_output": " there", ...}
    POST /v2/models/smol/versions/1/generate_stream     (the same body)
    -> data: {"model_name": "smol", "model_version": "1", "text_output": " the"}  (per token)

The prompt is sent as it is (no chat template). Errors before the stream starts are V2 error
bodies (``{"error": ...}`` with a 4xx); an error once it has started is one last event
``data: {"error": ...}``. ``parameters`` takes max_tokens, temperature, top_p, stop and seed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson

from modelport.errors import InvalidInput
from modelport.serving.llm import GENERATE, LanguageModels
from modelport.serving.openai_request import check_request, sampling_params
from modelport.serving.rest_v2 import JSON, Reply, parse_json
from modelport.serving.sequences import Run, failure, record
from modelport.serving.streaming import SSE_HEADERS, Stream, sse

PARAMETERS = ("max_tokens", "temperature", "top_p", "stop", "seed", "stream")
DEFAULT_MAX_TOKENS = 256


class RestGenerate:
    def __init__(self, models: LanguageModels) -> None:
        self.models = models

    async def generate(
        self, body: bytes, headers: dict[bytes, bytes], name: str, version: str | None = None
    ) -> Reply:
        run, head, series, n_prompt = await self._start(body, name, version)
        texts: list[str] = []
        why = None
        try:
            async for _, event in run.events():
                texts.append(event.text)
                why = event.finish or why
        finally:
            run.cancel()
        record(series, run, n_prompt)
        error = failure(why)
        if error is not None:
            raise error
        reply = {**head, "text_output": "".join(texts), "finish_reason": why}
        return 200, orjson.dumps(reply), JSON

    async def generate_stream(
        self, body: bytes, headers: dict[bytes, bytes], name: str, version: str | None = None
    ) -> Reply:
        run, head, series, n_prompt = await self._start(body, name, version)
        return 200, Stream(self._events(run, head, series, n_prompt), run.cancel), SSE_HEADERS

    async def _events(
        self, run: Run, head: dict, series: Any, n_prompt: int
    ) -> AsyncIterator[bytes]:
        async for _, event in run.events():
            why = event.finish
            error = failure(why)
            if error is not None:
                yield sse(orjson.dumps({"error": error.message}))
            elif event.text or why is not None:
                data = {**head, "text_output": event.text}
                if why is not None:
                    data["finish_reason"] = why
                yield sse(orjson.dumps(data))
        record(series, run, n_prompt)

    async def _start(
        self, body: bytes, name: str, version: str | None
    ) -> tuple[Run, dict, Any, int]:
        request = parse_json(body)
        text = request.get("text_input")
        if not isinstance(text, str) or not text:
            raise InvalidInput("'text_input' must be a non-empty string")
        params = request.get("parameters") or {}
        if not isinstance(params, dict):
            raise InvalidInput("'parameters' must be an object")
        unknown = sorted(set(params) - set(PARAMETERS))
        if unknown:
            raise InvalidInput(
                f"unknown parameters {', '.join(unknown)}; supported: {', '.join(PARAMETERS)}"
            )
        ref = name if version is None else f"{name}:{version}"
        found, engine = await self.models.get(ref, GENERATE)
        prompt = engine.encode(text)
        asked = {k: v for k, v in params.items() if k != "stream"}
        if "max_tokens" not in asked:
            asked["max_tokens"] = max(1, min(DEFAULT_MAX_TOKENS, engine.context - len(prompt)))
        asked["prompt"] = text
        check_request(asked, engine, [prompt])
        run = Run(engine, [prompt], 1, lambda choice: sampling_params(asked, choice))
        series = self.models.metrics.series(found.name, found.version, "text_completion")
        head = {"model_name": found.name, "model_version": str(found.version)}
        return run, head, series, len(prompt)
