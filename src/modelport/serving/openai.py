"""The OpenAI-compatible transport: /v1/models, chat and text completions, embeddings.

    api = OpenAI(LanguageModels(registry))
    status, payload, headers = await api.chat(body, headers)    # JSON, or an SSE Stream

Decode the request, ask the engine, encode the reply; errors use OpenAI's error schema. The
``model`` field is a registry reference: ``name``, ``name:3`` or ``name@alias``.
"""

from __future__ import annotations

import asyncio
import base64
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import numpy as np
import orjson

from modelport.errors import InvalidInput, ModelportError, Overloaded
from modelport.generation.base import SamplingParams, TokenEvent
from modelport.serving.llm import EMBED, GENERATE, LanguageModels
from modelport.serving.rest_v2 import Reply, parse_json
from modelport.serving.streaming import SSE_HEADERS, Stream, sse

JSON = [(b"content-type", b"application/json")]
MAX_N = 8
MAX_STOPS = 4
MAX_EMBED_INPUTS = 2048
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "invalid_request_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
}


class BadParam(InvalidInput):
    def __init__(self, param: str, message: str) -> None:
        super().__init__(message)
        self.param = param


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


def _params(request: dict[str, Any], choice: int) -> SamplingParams:
    stop = request.get("stop")
    if stop is None:
        stops: tuple[str, ...] = ()
    elif isinstance(stop, str):
        stops = (stop,)
    elif isinstance(stop, list) and all(isinstance(s, str) for s in stop):
        stops = tuple(stop)
    else:
        raise BadParam("stop", "'stop' must be a string or an array of strings")
    if len(stops) > MAX_STOPS:
        raise BadParam("stop", f"'stop' takes at most {MAX_STOPS} strings")
    seed = request.get("seed")
    for name, value in (
        ("temperature", request.get("temperature", 1.0)),
        ("top_p", request.get("top_p", 1.0)),
    ):
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise BadParam(name, f"'{name}' must be a number")
    try:
        return SamplingParams(
            max_tokens=request["_max_tokens"],
            temperature=float(request.get("temperature", 1.0)),
            top_p=float(request.get("top_p", 1.0)),
            stop=stops,
            seed=seed + choice if isinstance(seed, int) and not isinstance(seed, bool) else seed,
        )
    except InvalidInput as exc:
        param = next(
            (
                p
                for p in ("max_tokens", "temperature", "top_p", "seed")
                if exc.message.startswith(p)
            ),
            None,
        )
        raise BadParam(param or "", exc.message) from None


def _check_request(request: dict[str, Any], engine: Any, prompts: list[list[int]]) -> int:
    """Validate what does not depend on the prompt's content; the n of choices per prompt."""
    for unsupported in ("logprobs", "top_logprobs", "tools", "response_format"):
        value = request.get(unsupported)
        if value not in (None, False) and not (
            unsupported == "response_format" and value == {"type": "text"}
        ):
            raise BadParam(unsupported, f"'{unsupported}' is not supported by this server")
    n = request.get("n", 1)
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_N:
        raise BadParam("n", f"'n' must be an integer between 1 and {MAX_N}, got {n!r}")
    max_tokens = request.get("max_completion_tokens", request.get("max_tokens"))
    longest = max(len(p) for p in prompts)
    if max_tokens is None:
        max_tokens = max(engine.context - longest, 1)
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
        raise BadParam("max_tokens", f"'max_tokens' must be an integer >= 1, got {max_tokens!r}")
    try:
        engine.check(longest, max_tokens)
    except InvalidInput as exc:
        raise BadParam("messages" if "messages" in request else "prompt", exc.message) from None
    request["_max_tokens"] = max_tokens
    _params(request, 0)
    return n


class _Run:
    """Sequences submitted together (prompts x n); their events in one queue, tagged by index."""

    def __init__(self, engine: Any, prompts: list[list[int]], n: int, request: dict) -> None:
        loop = asyncio.get_running_loop()
        self.queue: asyncio.Queue[tuple[int, TokenEvent]] = asyncio.Queue()
        self.handles = []
        self.started = time.perf_counter()
        self.first: float | None = None
        try:
            for p, prompt in enumerate(prompts):
                for c in range(n):
                    index = p * n + c

                    def put(event: TokenEvent, index: int = index) -> None:
                        loop.call_soon_threadsafe(self.queue.put_nowait, (index, event))

                    self.handles.append(engine.submit(prompt, _params(request, c), put))
        except ModelportError:
            self.cancel()
            raise

    def cancel(self) -> None:
        for handle in self.handles:
            handle.cancel()

    async def events(self) -> AsyncIterator[tuple[int, TokenEvent]]:
        open_ = len(self.handles)
        while open_:
            index, event = await self.queue.get()
            if self.first is None and event.token is not None:
                self.first = time.perf_counter()
            if event.finish is not None:
                open_ -= 1
            yield index, event


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
        n = _check_request(request, engine, prompts)
        stream = request.get("stream", False)
        if not isinstance(stream, bool):
            raise BadParam("stream", "'stream' must be a boolean")
        options = request.get("stream_options") or {}
        if not isinstance(options, dict):
            raise BadParam("stream_options", "'stream_options' must be an object")
        run = _Run(engine, prompts, n, request)
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
        if stream:
            chunks = self._stream(
                run, meta, chat, n_prompt, bool(options.get("include_usage")), series
            )
            return 200, Stream(chunks, run.cancel), SSE_HEADERS
        texts: dict[int, list[str]] = {}
        reasons: dict[int, str | None] = {}
        completion = 0
        try:
            async for index, event in run.events():
                texts.setdefault(index, []).append(event.text)
                if event.finish is not None:
                    reasons[index] = event.finish
                    completion += event.completion_tokens
        finally:
            run.cancel()
        _record(series, run, n_prompt, completion)
        choices = []
        for index in range(len(run.handles)):
            text = "".join(texts.get(index, []))
            choice: dict[str, Any] = {
                "index": index,
                "logprobs": None,
                "finish_reason": _finish_reason(reasons.get(index)),
            }
            if chat:
                choice["message"] = {"role": "assistant", "content": text}
            else:
                choice["text"] = text
            choices.append(choice)
        reply = {**meta, "choices": choices, "usage": _usage(n_prompt, completion)}
        return 200, orjson.dumps(reply), JSON

    async def _stream(
        self, run: _Run, meta: dict, chat: bool, n_prompt: int, usage: bool, series: Any
    ) -> AsyncIterator[bytes]:
        meta = {**meta, "object": "chat.completion.chunk" if chat else "text_completion"}
        completion = 0
        if chat:
            for index in range(len(run.handles)):
                delta = {"role": "assistant", "content": ""}
                yield sse(
                    orjson.dumps(
                        {
                            **meta,
                            "choices": [
                                {
                                    "index": index,
                                    "delta": delta,
                                    "logprobs": None,
                                    "finish_reason": None,
                                }
                            ],
                        }
                    )
                )
        async for index, event in run.events():
            if not event.text and event.finish is None:
                continue
            reason = _finish_reason(event.finish)
            if event.finish is not None:
                completion += event.completion_tokens
            if chat:
                choice = {
                    "index": index,
                    "delta": {"content": event.text} if event.text else {},
                    "logprobs": None,
                    "finish_reason": reason,
                }
            else:
                choice = {
                    "index": index,
                    "text": event.text,
                    "logprobs": None,
                    "finish_reason": reason,
                }
            chunk = {**meta, "choices": [choice]}
            if usage:
                chunk["usage"] = None
            yield sse(orjson.dumps(chunk))
        _record(series, run, n_prompt, completion)
        if usage:
            yield sse(orjson.dumps({**meta, "choices": [], "usage": _usage(n_prompt, completion)}))
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
        if len(texts) > MAX_EMBED_INPUTS:
            raise BadParam("input", f"'input' takes at most {MAX_EMBED_INPUTS} strings")
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


def _record(series: Any, run: _Run, n_prompt: int, completion: int) -> None:
    end = time.perf_counter()
    first = run.first or end
    series.first_token(first - run.started)
    series.finished(n_prompt, completion, end - run.started, end - first)
