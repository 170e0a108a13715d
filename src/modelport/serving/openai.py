"""The OpenAI-compatible transport: /v1/models, chat and text completions, embeddings.

    api = OpenAI(LanguageModels(registry))
    status, payload, headers = await api.chat(body, headers)    # JSON, or an SSE Stream

Decode the request (``openai_request``), ask the engine, encode the reply (log-probabilities
in ``logprobs``); errors use OpenAI's error schema. The ``model`` field is a registry
reference: ``name``, ``name:3`` or ``name@alias``.
"""

from __future__ import annotations

import asyncio
import base64
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import partial
from typing import Any

import numpy as np
import orjson

from modelport.errors import InvalidInput, ModelportError, Overloaded
from modelport.serving.llm import EMBED, GENERATE, LanguageModels
from modelport.serving.logprobs import Logprobs
from modelport.serving.openai_request import MAX_N, BadParam, check_request, sampling_params
from modelport.serving.rest_v2 import Reply, parse_json
from modelport.serving.sequences import Run, failure, record
from modelport.serving.streaming import SSE_HEADERS, Stream, sse

JSON = [(b"content-type", b"application/json")]
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "invalid_request_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
}


def error_reply(exc: ModelportError) -> Reply:
    code = getattr(exc, "param", None)
    error = {
        "message": exc.message,
        "type": ERROR_TYPES.get(exc.status, "server_error"),
        "param": code,
        "code": "model_not_found" if exc.status == 404 else None,
    }
    headers = list(JSON)
    if isinstance(exc, Overloaded):
        headers.append((b"retry-after", str(exc.retry_after).encode()))
    return exc.status, orjson.dumps({"error": error}), headers


def openai_errors(handler: Callable[..., Awaitable[Reply]]) -> Callable[..., Awaitable[Reply]]:
    async def wrapped(body: bytes, headers: dict[bytes, bytes]) -> Reply:
        try:
            return await handler(body, headers)
        except ModelportError as exc:
            return error_reply(exc)

    wrapped.__name__ = handler.__name__
    return wrapped


def _usage(prompt: int, completion: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def _finish_reason(why: str | None) -> str | None:
    return None if why is None else ("length" if why == "length" else "stop")


class OpenAI:
    def __init__(self, models: LanguageModels) -> None:
        self.models = models
        self.chat = openai_errors(self._chat)
        self.completions = openai_errors(self._completions)
        self.embeddings = openai_errors(self._embeddings)
        self.list_models = openai_errors(self._list_models)

    async def _list_models(self, body: bytes, headers: dict[bytes, bytes]) -> Reply:
        data = [
            {
                "id": v.name,
                "object": "model",
                "created": int(v.created_at.timestamp()),
                "owned_by": v.created_by or "modelport",
            }
            for v in await self.models.listing()
        ]
        return 200, orjson.dumps({"object": "list", "data": data}), JSON

    async def _chat(self, body: bytes, headers: dict[bytes, bytes]) -> Reply:
        request = parse_json(body)
        version, engine = await self.models.get(request.get("model"), GENERATE)
        if "messages" not in request:
            raise BadParam("messages", "'messages' is required")
        try:
            prompt = engine.chat_prompt(request["messages"])
        except InvalidInput as exc:
            raise BadParam("messages", exc.message) from None
        return await self._generate(request, version, engine, [prompt], chat=True)

    async def _completions(self, body: bytes, headers: dict[bytes, bytes]) -> Reply:
        request = parse_json(body)
        version, engine = await self.models.get(request.get("model"), GENERATE)
        prompt = request.get("prompt")
        if isinstance(prompt, str):
            prompts = [engine.encode(prompt)]
        elif isinstance(prompt, list) and prompt and all(isinstance(p, str) for p in prompt):
            prompts = [engine.encode(p) for p in prompt]
        elif (
            isinstance(prompt, list)
            and prompt
            and all(isinstance(t, int) and 0 <= t < engine.model.vocab for t in prompt)
        ):
            prompts = [list(prompt)]
        else:
            raise BadParam(
                "prompt",
                "'prompt' must be a non-empty string, array of strings or array of token ids",
            )
        if len(prompts) > MAX_N:
            raise BadParam("prompt", f"at most {MAX_N} prompts per request")
        return await self._generate(request, version, engine, prompts, chat=False)

    async def _generate(
        self, request: dict, version: Any, engine: Any, prompts: list[list[int]], chat: bool
    ) -> Reply:
        n = check_request(request, engine, prompts)
        stream = request.get("stream", False)
        if not isinstance(stream, bool):
            raise BadParam("stream", "'stream' must be a boolean")
        options = request.get("stream_options") or {}
        if not isinstance(options, dict):
            raise BadParam("stream_options", "'stream_options' must be an object")
        run = Run(engine, prompts, n, partial(sampling_params, request))
        series = self.models.metrics.series(
            version.name, version.version, "chat" if chat else "text_completion"
        )
        meta = {
            "id": f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex[:24]}",
            "object": "chat.completion" if chat else "text_completion",
            "created": int(time.time()),
            "model": request["model"],
            "system_fingerprint": f"{version.ref}:{version.sha256[:12]}",
        }
        n_prompt = sum(len(p) for p in prompts) * n
        shapes = None
        if request["_logprobs"] is not None:
            shapes = [Logprobs(engine, chat) for _ in run.handles]
        if stream:
            include = bool(options.get("include_usage"))
            chunks = self._stream(run, meta, chat, n_prompt, include, series, shapes)
            return 200, Stream(chunks, run.cancel), SSE_HEADERS
        events: dict[int, list] = {i: [] for i in range(len(run.handles))}
        try:
            async for index, event in run.events():
                events[index].append(event)
        finally:
            run.cancel()
        completion = run.completion
        record(series, run, n_prompt)
        for seen in events.values():
            error = failure(seen[-1].finish if seen else None)
            if error is not None:
                raise error
        choices = []
        for index, seen in events.items():
            choice: dict[str, Any] = {
                "index": index,
                "logprobs": None if shapes is None else shapes[index].of(seen),
                "finish_reason": _finish_reason(seen[-1].finish if seen else None),
            }
            text = "".join(e.text for e in seen)
            if chat:
                choice["message"] = {"role": "assistant", "content": text}
            else:
                choice["text"] = text
            choices.append(choice)
        reply = {**meta, "choices": choices, "usage": _usage(n_prompt, completion)}
        return 200, orjson.dumps(reply), JSON

    async def _stream(
        self, run: Run, meta: dict, chat: bool, n_prompt: int, usage: bool, series: Any,
        shapes: list[Logprobs] | None,
    ) -> AsyncIterator[bytes]:  # fmt: skip
        meta = {**meta, "object": "chat.completion.chunk" if chat else "text_completion"}
        if chat:
            for index in range(len(run.handles)):
                delta = {"role": "assistant", "content": ""}
                choice = {"index": index, "delta": delta, "logprobs": None, "finish_reason": None}
                yield sse(orjson.dumps({**meta, "choices": [choice]}))
        async for index, event in run.events():
            error = failure(event.finish)
            if error is not None:  # the SDK raises on an event carrying "error"
                yield sse(error_reply(error)[1])
                run.cancel()
                return
            if not event.text and event.finish is None and event.logprob is None:
                continue
            reason = _finish_reason(event.finish)
            choice: dict[str, Any] = {"index": index}
            if chat:
                choice["delta"] = {"content": event.text} if event.text else {}
            else:
                choice["text"] = event.text
            choice["logprobs"] = None if shapes is None else shapes[index].of([event])
            choice["finish_reason"] = reason
            chunk = {**meta, "choices": [choice]}
            if usage:
                chunk["usage"] = None
            yield sse(orjson.dumps(chunk))
        record(series, run, n_prompt)
        if usage:
            final = {**meta, "choices": [], "usage": _usage(n_prompt, run.completion)}
            yield sse(orjson.dumps(final))
        yield sse(b"[DONE]")

    async def _embeddings(self, body: bytes, headers: dict[bytes, bytes]) -> Reply:
        request = parse_json(body)
        texts = request.get("input")
        if isinstance(texts, str):
            texts = [texts]
        if not isinstance(texts, list) or not texts:
            raise BadParam("input", "'input' must be a non-empty string or array of strings")
        if not all(isinstance(t, str) and t for t in texts):
            raise BadParam("input", "every 'input' item must be a non-empty string")
        fmt = request.get("encoding_format", "float")
        if fmt not in ("float", "base64"):
            raise BadParam("encoding_format", "'encoding_format' must be 'float' or 'base64'")
        version, encoder = await self.models.get(request.get("model"), EMBED)
        vectors, tokens = await asyncio.to_thread(encoder.embed, texts)
        data = []
        for i, vector in enumerate(np.asarray(vectors, dtype=np.float32)):
            if fmt == "base64":
                value: Any = base64.b64encode(vector.tobytes()).decode()
            else:
                value = vector.tolist()
            data.append({"object": "embedding", "index": i, "embedding": value})
        reply = {
            "object": "list",
            "data": data,
            "model": request["model"],
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
        return 200, orjson.dumps(reply), JSON
