"""What `modelport serve` serves and how: references, version policy, batching, runtime options."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from modelport.errors import InvalidInput
from modelport.runtimes.base import RuntimeOptions
from modelport.uri import ModelRef, validate_alias


@dataclass(frozen=True)
class BatchConfig:
    """Dynamic batching of one model: ``max_batch_size`` 1 turns it off (the default)."""

    max_batch_size: int = 1
    max_queue_delay_us: int = 500

    def __post_init__(self) -> None:
        if not isinstance(self.max_batch_size, int) or self.max_batch_size < 1:
            raise InvalidInput(
                f"max_batch_size must be an integer >= 1, got {self.max_batch_size!r}"
            )
        if not isinstance(self.max_queue_delay_us, int) or self.max_queue_delay_us < 0:
            raise InvalidInput(
                f"max_queue_delay_us must be an integer >= 0, got {self.max_queue_delay_us!r}"
            )

    @property
    def enabled(self) -> bool:
        return self.max_batch_size > 1


SHADOW_RUNNERS = ("process", "thread", "loop")


@dataclass(frozen=True)
class ServeConfig:
    """Which models a server keeps loaded.

    ``refs``: explicit references ("digits:2" pins a version, "digits@staging" follows an alias,
    "digits" follows the newest version); empty = every model that carries ``alias``.
    ``version_policy``: which further versions of a served model stay loaded, reachable through
    version URLs: "aliased" (every version carrying an alias, so labels resolve), "latest:N" (the N
    newest versions) or "specific" (only what the references designate).
    ``batching``: per model name, "*" for the default of every model.
    ``workers``: threads running inference (0 = one per core, at least 2).
    ``inline_below_us``: a runtime call estimated to take less runs on the event loop, since the
    hop to a worker thread would cost more (0 = always in a worker thread).
    ``rollout_key``: the input whose value keys the sticky split when a request has no
    ``X-Modelport-Key`` header; ``rollout_tick``: how often rollouts are followed and decided;
    ``shadow_runner``: where shadow copies run: "process" (a worker process), "thread" or "loop".
    """

    refs: tuple[str, ...] = ()
    alias: str = "production"
    version_policy: str = "aliased"
    poll_interval: float = 2.0
    batching: Mapping[str, BatchConfig] = field(default_factory=dict)
    runtime: RuntimeOptions | None = None
    request_timeout: float = 30.0
    workers: int = 0
    inline_below_us: int = 1000
    rollout_key: str | None = None  # an input whose value is the sticky key of a request
    rollout_tick: float = 0.25  # seconds between rollout checks (state, tallies, controller)
    shadow_runner: str = "process"

    def __post_init__(self) -> None:
        object.__setattr__(self, "refs", tuple(self.refs))
        for ref in self.refs:
            ModelRef.parse(ref)
        validate_alias(self.alias)
        _ = self.latest_n  # validates the policy
        if not self.poll_interval > 0:
            raise InvalidInput(f"poll_interval must be > 0 seconds, got {self.poll_interval!r}")
        if not self.request_timeout > 0:
            raise InvalidInput(f"request_timeout must be > 0 seconds, got {self.request_timeout!r}")
        if not isinstance(self.inline_below_us, int) or self.inline_below_us < 0:
            raise InvalidInput(
                f"inline_below_us must be an integer >= 0, got {self.inline_below_us!r}"
            )
        if not self.rollout_tick > 0:
            raise InvalidInput(f"rollout_tick must be > 0 seconds, got {self.rollout_tick!r}")
        if self.shadow_runner not in SHADOW_RUNNERS:
            raise InvalidInput(
                f"shadow runner {self.shadow_runner!r} is not one of {', '.join(SHADOW_RUNNERS)}"
            )
        for name, batch in self.batching.items():
            if not isinstance(batch, BatchConfig):
                raise InvalidInput(f"batching for {name!r} must be a BatchConfig")

    @property
    def parsed_refs(self) -> tuple[ModelRef, ...]:
        return tuple(ModelRef.parse(ref) for ref in self.refs)

    @property
    def latest_n(self) -> int:
        """N of a "latest:N" policy, 0 for the other policies."""
        policy = self.version_policy
        if policy in ("aliased", "specific"):
            return 0
        head, _, count = policy.partition(":")
        if head == "latest" and count.isascii() and count.isdigit() and int(count) >= 1:
            return int(count)
        raise InvalidInput(
            f"version policy {policy!r} is not one of 'aliased', 'latest:N' (N >= 1), 'specific'"
        )

    def batch_for(self, name: str) -> BatchConfig:
        return self.batching.get(name) or self.batching.get("*") or BatchConfig()
