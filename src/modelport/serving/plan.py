"""What should be loaded, read from the registry: the version policy in one pure function.

For each served name, the references designate target versions ("digits:2" pins 2, "digits@staging"
follows the alias, "digits" follows the newest version; no references = every model carrying the
serving alias, or every model of a repository folder). The policy adds versions reachable by
version URL: "aliased" adds every version carrying an alias (a folder has none), "latest:N" the N
newest, "specific" nothing. The default version (plain model URLs) is, in this order: the target
of a reference naming an alias; the serving alias's target when that version is served; the newest
version a reference designates.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from modelport.errors import ModelportError, NotFound
from modelport.registry import Registry
from modelport.serving.config import ServeConfig
from modelport.uri import ModelRef


@dataclass(frozen=True)
class Wanted:
    versions: frozenset[int]
    default: int
    labels: dict[str, int]  # every alias of the model -> version
    follows_alias: str | None = None  # the alias whose moves move the default


@dataclass
class Plan:
    wanted: dict[str, Wanted] = field(default_factory=dict)
    problems: dict[str, ModelportError] = field(default_factory=dict)
    catalogue: tuple[str, ...] = ()  # every model name in the registry


def make_plan(
    registry: Registry,
    config: ServeConfig,
    forced: Iterable[str] = (),
    unloaded: Iterable[str] = (),
) -> Plan:
    summaries = {s.name: s for s in registry.list_models()}
    refs: dict[str, list[ModelRef]] = {}
    if config.refs:
        for ref in config.parsed_refs:
            refs.setdefault(ref.name, []).append(ref)
    elif getattr(registry, "folder", False):  # a model repository folder: every model in it
        refs = {name: [ModelRef(name)] for name in summaries}
    else:
        for s in summaries.values():
            if config.alias in s.aliases:
                refs[s.name] = [ModelRef(s.name, alias=config.alias)]
    for name in forced:
        if name not in refs:
            summary = summaries.get(name)
            has_alias = summary is not None and config.alias in summary.aliases
            refs[name] = [ModelRef(name, alias=config.alias) if has_alias else ModelRef(name)]
    skip = set(unloaded)
    plan = Plan(catalogue=tuple(sorted(summaries)))
    for name, name_refs in refs.items():
        if name in skip:
            continue
        summary = summaries.get(name)
        if summary is None or summary.latest is None:
            plan.problems[name] = NotFound(f"model {name!r} not found in the registry")
            continue
        targets: list[tuple[ModelRef, int]] = []
        for ref in name_refs:
            if ref.alias is not None:
                if ref.alias not in summary.aliases:
                    plan.problems[name] = NotFound(f"model {name!r} has no alias {ref.alias!r}")
                    continue
                targets.append((ref, summary.aliases[ref.alias]))
            else:
                targets.append((ref, ref.version or summary.latest))
        if not targets or _text_only(registry, name, targets):
            continue  # a language model is served by the OpenAI routes, not the tensor set
        plan.problems.pop(name, None)
        versions = {v for _, v in targets}
        if config.version_policy == "aliased":
            versions |= set(summary.aliases.values())
        elif config.latest_n:
            versions |= {v.version for v in registry.list_versions(name)[-config.latest_n :]}
        default, follows = _default(targets, summary.aliases.get(config.alias), versions)
        plan.wanted[name] = Wanted(frozenset(versions), default, dict(summary.aliases), follows)
    for rollout in registry.rollouts.list(active_only=True):  # candidates stay loaded
        wanted = plan.wanted.get(rollout.name)
        if wanted is not None:
            plan.wanted[rollout.name] = replace(
                wanted, versions=wanted.versions | {rollout.candidate}
            )
    return plan


def _text_only(registry: Registry, name: str, targets: list[tuple[ModelRef, int]]) -> bool:
    from modelport.serving.llm import TEXT_FORMATS

    return all(registry.get(f"{name}:{v}").format in TEXT_FORMATS for _, v in targets)


def _default(
    targets: list[tuple[ModelRef, int]], serving_alias: int | None, versions: set[int]
) -> tuple[int, str | None]:
    """The version a plain model URL reaches, and the alias it follows: the target of a reference
    naming an alias ("digits@staging"); else the serving alias's target (``--alias``) when that
    version is served; else the newest version a reference designates."""
    for ref, version in targets:
        if ref.alias is not None:
            return version, ref.alias
    if serving_alias is not None and serving_alias in versions:
        return serving_alias, None
    return max(version for _, version in targets), None
