"""Continuous batching: one decode loop for every sequence of a model, on its own thread.

    scheduler = Scheduler(model, max_queue=64, prefill_chunk=256, timeouts=(300.0, 60.0))
    handle = scheduler.submit(prompt_ids, SamplingParams(max_tokens=32), on_event)
    handle.cancel()             # the slot is free before the next decode step
    scheduler.submit_all([(prompt_ids, params, on_event), ...])   # repeatable: batch jobs
    scheduler.close()

Each step decodes one row per running sequence plus at most ``prefill_chunk`` prompt tokens of
the sequences still prefilling, so a long prompt never stalls the streams already running. New
sequences join between steps as slots free up. A finished sequence leaves its cache in its slot;
the next prompt sharing a prefix with it (a repeated system prompt) reuses that prefix instead
of computing it again. Waiting sequences beyond ``max_queue`` are refused (``Overloaded``).
A sequence without its first token ``timeouts[0]`` seconds after it was submitted, or without
a next token ``timeouts[1]`` seconds after the last, ends with ``finish="timeout: ..."`` and
frees its slot (the whole generation has no limit).
A sequence with a grammar (``SamplingParams.grammar``) samples only tokens the grammar allows;
with ``SamplingParams.logprobs`` each event carries the token's log-probability.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Iterable, Sequence
from time import perf_counter

from modelport.errors import InvalidInput, Overloaded
from modelport.generation.base import BatchModel, OnEvent, SamplingParams, TokenEvent
from modelport.generation.sampling import log_probs, sample
from modelport.generation.sequence import Handle

log = logging.getLogger("modelport.generation")


class Scheduler:
    def __init__(
        self, model: BatchModel, max_queue: int = 64, prefill_chunk: int = 256,
        timeouts: tuple[float, float] = (300.0, 60.0),
    ) -> None:  # fmt: skip
        self.model = model
        self.first_token_timeout, self.token_gap_timeout = timeouts
        self.max_queue = max_queue
        self.prefill_chunk = max(1, min(prefill_chunk, model.batch))
        self._waiting: deque[Handle] = deque()
        self._running: list[Handle] = []
        self._free = list(range(model.slots))
        self._contents: dict[int, list[int]] = {s: [] for s in range(model.slots)}
        self._cond = threading.Condition()
        self._closed = False
        self._fresh = False  # drop the slots' cached prefixes before the next admission
        self.steps = 0
        self.cache_hits = 0  # prompt tokens served from a slot's cache
        self._thread = threading.Thread(target=self._loop, name="modelport-decode", daemon=True)
        self._thread.start()

    # -- any thread ----------------------------------------------------------------------------

    @property
    def running(self) -> int:
        return len(self._running)

    @property
    def queued(self) -> int:
        return len(self._waiting)

    def check_prompt(self, n_prompt: int, max_tokens: int) -> None:
        """A prompt must leave room for what is asked in the context."""
        context = self.model.context
        if n_prompt < 1:
            raise InvalidInput("the prompt is empty")
        if n_prompt >= context:
            raise InvalidInput(
                f"the prompt has {n_prompt} tokens; this model's context is {context} tokens"
            )
        if n_prompt + max_tokens > context:
            raise InvalidInput(
                f"the prompt ({n_prompt} tokens) plus max_tokens ({max_tokens}) is more than "
                f"this model's context of {context} tokens; ask for at most "
                f"{context - n_prompt} tokens"
            )

    def submit(self, prompt: Sequence[int], params: SamplingParams, on_event: OnEvent) -> Handle:
        self.check_prompt(len(prompt), params.max_tokens)
        handle = Handle(list(prompt), params, on_event, self._wake)
        if params.grammar is not None:
            constrain = getattr(self.model, "constrain", None)
            if constrain is None:
                raise InvalidInput("this model's backend cannot constrain its output")
            handle.constraint = constrain(params.grammar)
        with self._cond:
            waiting = len(self._waiting) - len(self._free)  # the rest take a free slot next step
            refused = None
            if self._closed:
                refused = Overloaded("the model is shutting down", retry_after=1)
            elif waiting >= self.max_queue:
                refused = Overloaded(
                    f"{waiting} requests are already waiting for this model", retry_after=1
                )
            else:
                self._waiting.append(handle)
                self._cond.notify()
        if refused is not None:
            if handle.constraint is not None:
                handle.constraint.close()
            raise refused
        return handle

    def submit_all(self, requests: Sequence[tuple[Sequence[int], SamplingParams, OnEvent]]
                   ) -> list[Handle]:  # fmt: skip
        """Queue several sequences at once, in order, to run on their own: none is admitted
        before all are queued, and the slots' cached prefixes are dropped first. What the
        decode steps hold then follows from these sequences alone (not from the timing of
        other requests), so the same requests generate the same tokens, bit for bit: what a
        batch job needs to resume. Call it when nothing else runs on this scheduler."""
        for prompt, params, _ in requests:
            self.check_prompt(len(prompt), params.max_tokens)
            if params.grammar is not None:
                raise InvalidInput("submit_all takes no grammar")
        handles = [Handle(list(p), params, on_event, self._wake)
                   for p, params, on_event in requests]  # fmt: skip
        with self._cond:
            if self._closed:
                raise Overloaded("the model is shutting down", retry_after=1)
            if self._running or self._waiting:
                raise Overloaded("submit_all needs an idle scheduler", retry_after=1)
            self._fresh = True
            self._waiting.extend(handles)
            self._cond.notify()
        return handles

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join(timeout=30)

    def _wake(self) -> None:
        with self._cond:
            self._cond.notify()

    # -- the decode thread ---------------------------------------------------------------------

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._closed and not self._running and not self._waiting:
                    self._cond.wait()
                if self._closed:
                    break
                self._reap(self._waiting)  # the queue is shared with submit(): under the lock
                self._admit()
            self._reap(self._running)
            if self._running:
                try:
                    self._step()
                except Exception as exc:  # a backend failure ends these sequences, not the loop
                    log.exception("decode step failed")
                    for handle in list(self._running):
                        self._finish(handle, f"error: {type(exc).__name__}")
                    self._drop_caches()
        for handle in [*self._running, *self._waiting]:
            self._finish(handle, "cancelled")

    def _drop_caches(self) -> None:
        """After a failed step no slot's cache is trusted for a prefix (the running ones have
        ended; the idle ones' are dropped too)."""
        for slot in self._contents:
            self._contents[slot] = []
            try:
                self.model.forget(slot, 0)
            except Exception:
                log.exception("dropping the cache of slot %d failed", slot)

    def _admit(self) -> None:
        if self._fresh and not self._running:  # slots taken in order, their caches empty
            self._fresh = False
            self._drop_caches()
            self._free.sort()
        while self._free and self._waiting:
            handle = self._waiting.popleft()
            if handle.cancelled:
                self._finish(handle, "cancelled")
                continue
            slot, common = self._best_slot(handle.prompt)
            self._free.remove(slot)
            self.model.forget(slot, common)
            handle.slot, handle.pos, handle.cached = slot, common, common
            handle.pending = handle.prompt[common:]
            self.cache_hits += common
            self._contents[slot] = handle.prompt[:common]
            self._running.append(handle)

    def _best_slot(self, prompt: list[int]) -> tuple[int, int]:
        """The free slot whose cached tokens share the longest prefix with ``prompt`` (at least
        the last prompt token is computed again: its logits are needed)."""
        best, best_len = self._free[0], 0
        for slot in self._free:
            held = self._contents[slot]
            n = 0
            for a, b in zip(held, prompt[:-1], strict=False):
                if a != b:
                    break
                n += 1
            if n > best_len:
                best, best_len = slot, n
        return best, best_len

    def _reap(self, handles: Iterable[Handle]) -> None:
        """End the cancelled and the late among ``handles``."""
        now = perf_counter()
        for handle in list(handles):
            if handle.cancelled:
                self._finish(handle, "cancelled")
                continue
            late = self._late(handle, now)
            if late is not None:
                self._finish(handle, late)

    def _late(self, handle: Handle, now: float) -> str | None:
        """Why ``handle`` has waited too long for its next token (None: it has not)."""
        if handle.generated == 0:
            if now - handle.submitted > self.first_token_timeout:
                return f"timeout: no first token within {self.first_token_timeout:g} s"
        elif now - handle.last > self.token_gap_timeout:
            return f"timeout: no next token within {self.token_gap_timeout:g} s"
        return None

    def _step(self) -> None:
        taken = self._plan()
        if not taken:
            return
        # rows in slot order: llama.cpp computes a batch of several sequences in one pass only
        # if their ids rise one by one down the batch; out of order, it splits the batch
        taken.sort(key=lambda t: t[0].slot)
        rows: list[tuple[int, int, int, bool]] = []
        owners: list[Handle] = []
        for handle, take in taken:
            for i, token in enumerate(handle.pending[:take]):
                last = i == take - 1 and take == len(handle.pending)
                rows.append((handle.slot, token, handle.pos + i, last))
            self._contents[handle.slot].extend(handle.pending[:take])
            handle.pos += take
            handle.pending = handle.pending[take:]
            if not handle.pending:
                owners.append(handle)
        logits = self.model.decode(rows)
        self.steps += 1
        for handle, row in zip(owners, logits, strict=True):
            self._advance(handle, row)

    def _plan(self) -> list[tuple[Handle, int]]:
        """How many pending tokens of each running sequence the next step computes: one for
        each decoding sequence, then prompt tokens in order of arrival, at most
        ``prefill_chunk`` of them, within the batch."""
        taken: list[tuple[Handle, int]] = []
        room, budget = self.model.batch, self.prefill_chunk
        decoding = [h for h in self._running if len(h.pending) == 1 and h.generated]
        prefilling = [h for h in self._running if not (len(h.pending) == 1 and h.generated)]
        for handle in decoding:
            if room > 0:
                taken.append((handle, 1))
                room -= 1
        for handle in prefilling:
            take = min(len(handle.pending), budget, room)
            if take > 0:
                taken.append((handle, take))
                budget -= take
                room -= take
        return taken

    def _choose(self, handle: Handle, logits) -> int | None:
        """The next token; under a grammar, the sampled token if the grammar allows it, else
        one sampled again among the tokens it allows (None: it allows none)."""
        p, grammar = handle.params, handle.constraint
        token = sample(logits, p.temperature, p.top_p, handle.rng)
        if grammar is None:
            return token
        if not grammar.allows(token):
            masked = logits.copy()
            grammar.mask(masked)
            if not masked.max() > -float("inf"):
                return None
            token = sample(masked, p.temperature, p.top_p, handle.rng)
        if token not in self.model.eos:
            grammar.accept(token)
        return token

    def _advance(self, handle: Handle, logits) -> None:
        p = handle.params
        late = self._late(handle, perf_counter())
        if late is not None:
            self._finish(handle, late)
            return
        token = self._choose(handle, logits)
        if token is None:
            self._finish(handle, "error: the grammar allows no next token")
            return
        handle.generated += 1
        lp, top = None, ()
        if p.logprobs is not None:
            lp, top = log_probs(logits, token, p.logprobs)
        if token in self.model.eos:
            self._finish(
                handle, "stop", handle.stops.flush() + handle.utf8.decode(b"", True), token
            )
            return
        text, stopped = handle.stops.feed(handle.utf8.decode(self.model.piece(token)))
        if stopped:
            self._finish(handle, "stop", text, token)
            return
        if handle.generated >= p.max_tokens or handle.pos + 1 >= self.model.context:
            self._finish(handle, "length", text + handle.stops.flush(), token, lp, top)
            return
        handle.pending = [token]
        handle.last = perf_counter()
        n = len(handle.prompt)
        self._emit(handle, TokenEvent(text, token, None, n, handle.generated, lp, top))

    def _finish(
        self, handle: Handle, why: str, text: str = "", token: int | None = None,
        logprob: float | None = None, top: tuple = (),
    ) -> None:  # fmt: skip
        if handle.done:
            return
        if handle in self._running:
            self._running.remove(handle)
            self._free.append(handle.slot)
        elif handle in self._waiting:
            self._waiting.remove(handle)
        if handle.constraint is not None:
            handle.constraint.close()
            handle.constraint = None
        n = len(handle.prompt)
        self._emit(handle, TokenEvent(text, token, why, n, handle.generated, logprob, top))

    def _emit(self, handle: Handle, event: TokenEvent) -> None:
        if event.finish is not None:
            handle.done = True
        try:
            handle.on_event(event)
        except Exception:  # a consumer's bug must not stop the other sequences
            log.exception("token consumer failed")
