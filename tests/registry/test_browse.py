"""Paged catalogue reads (registry/browse.py) and compare-and-set alias moves, on SQLite and
PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelport.errors import InvalidInput, NotFound
from modelport.importers.onnx import from_path
from modelport.registry import Registry, browse
from modelport.registry.registry import StaleAlias
from tests.conftest import make_mlp_onnx


def _fill(registry: Registry, tmp_path: Path, name: str, count: int, **kw) -> None:
    artifact = from_path(make_mlp_onnx(tmp_path / f"{name}.onnx"))
    for _ in range(count):
        registry.add(artifact, name, **kw)


def _numbers(page: browse.Page) -> list[int]:
    return [v.version for v in page.items]


def test_versions_are_paged_by_key(registry: Registry, tmp_path: Path) -> None:
    _fill(registry, tmp_path, "big", 60)
    registry.set_alias("big", "production", 35)
    registry.delete("big:30")
    kept = [n for n in range(60, 0, -1) if n != 30]
    first = browse.versions_page(registry, "big", limit=25)
    assert _numbers(first) == kept[:25] and first.total == 59
    second = browse.versions_page(registry, "big", before=kept[24], limit=25)
    assert _numbers(second) == kept[25:50]
    assert next(v for v in second.items if v.version == 35).aliases == ("production",)
    last = browse.versions_page(registry, "big", before=kept[49], limit=25)
    assert _numbers(last) == kept[50:]
    newer = browse.versions_page(registry, "big", after=40, limit=10)
    assert _numbers(newer) == list(range(50, 40, -1))
    assert (first.oldest, first.latest) == (1, 60) and (last.oldest, last.latest) == (1, 60)
    with pytest.raises(InvalidInput):
        browse.versions_page(registry, "big", before=5, after=1)
    with pytest.raises(InvalidInput):
        browse.versions_page(registry, "big", limit=0)
    with pytest.raises(NotFound):
        browse.versions_page(registry, "nope")


def test_models_are_searched_sorted_and_paged(registry: Registry, tmp_path: Path) -> None:
    _fill(registry, tmp_path, "alpha", 3)
    _fill(registry, tmp_path, "beta_1", 1)
    _fill(registry, tmp_path, "betamax", 2)
    registry.set_alias("alpha", "production", 1)  # alpha changed last
    page = browse.models_page(registry, sort="updated", descending=True)
    assert [m.name for m in page.items] == ["alpha", "betamax", "beta_1"]
    assert page.items[0].aliases == {"production": 1} and page.items[0].latest == 3
    assert [m.name for m in browse.models_page(registry, search="BETA").items] == [
        "beta_1", "betamax",
    ]  # fmt: skip
    assert [m.name for m in browse.models_page(registry, search="a_").items] == ["beta_1"]
    by_count = browse.models_page(registry, sort="versions", limit=1, offset=1)
    assert [m.name for m in by_count.items] == ["betamax"] and by_count.total == 3
    with pytest.raises(InvalidInput):
        browse.models_page(registry, sort="size")


def test_children_and_alias_events(registry: Registry, tmp_path: Path) -> None:
    _fill(registry, tmp_path, "m", 1)
    artifact = from_path(make_mlp_onnx(tmp_path / "kid.onnx", seed=3))
    for transform in ("quantize", "prune", "distill"):
        registry.add(artifact, "m", parent="m:1", transform=transform)
    registry.add(artifact, "other", parent="m:2", transform="convert", transform_params={"to": "x"})
    kids, totals = browse.children_of(registry, [("m", 1), ("m", 2)], per_parent=2)
    assert [k.ref for k in kids["m:1"]] == ["m:2", "m:3"] and totals == {"m:1": 3, "m:2": 1}
    assert kids["m:2"][0].ref == "other:1" and kids["m:2"][0].transform_params == {"to": "x"}
    assert browse.children(registry, "m", 1).total == 3
    other = registry.get("other:1")
    assert [v.ref for v in browse.ancestors(registry, other, limit=1)] == ["other:1", "m:2"]
    assert [v.ref for v in browse.ancestors(registry, other)] == ["other:1", "m:2", "m:1"]
    registry.set_alias("m", "production", 1)
    registry.set_alias("m", "production", 2)
    registry.rollback("m", "production")
    events = browse.alias_events(registry, "m", limit=2)
    assert events.total == 3 and [e.action for e in events.items] == ["alias_set", "rollback"]


def test_an_alias_moves_only_from_where_the_caller_saw_it(registry: Registry,
                                                          tmp_path: Path) -> None:  # fmt: skip
    _fill(registry, tmp_path, "m", 3)
    registry.set_alias("m", "production", 1, expected=None)  # new: it must not exist yet
    with pytest.raises(StaleAlias) as stale:
        registry.set_alias("m", "production", 3, expected=2)
    assert stale.value.current == 1 and stale.value.status == 409
    assert registry.resolve("m@production").version == 1
    with pytest.raises(StaleAlias):
        registry.set_alias("m", "production", 3, expected=None)
    registry.set_alias("m", "production", 2, expected=1)
    with pytest.raises(StaleAlias):
        registry.rollback("m", "production", expected=1)
    assert registry.rollback("m", "production", expected=2).version == 1
    assert [e.action for e in registry.history("m", "production")] == [
        "alias_set", "alias_set", "rollback",
    ]  # fmt: skip


def test_a_schema_4_catalogue_gains_the_parent_index(sqlite_registry: Registry) -> None:
    import sqlalchemy as sa

    from modelport.registry import catalog

    with sqlite_registry.engine.begin() as conn:
        conn.exec_driver_sql("DROP INDEX ix_versions_parent")
        conn.execute(sa.update(catalog.meta).values(value="4"))
    settings = sqlite_registry.settings
    sqlite_registry.close()
    with Registry(settings) as reopened, reopened.engine.connect() as conn:
        indexes = {i["name"] for i in sa.inspect(conn).get_indexes("versions")}
        stored = conn.execute(sa.select(catalog.meta.c.value)).scalar_one()
    assert "ix_versions_parent" in indexes and stored == str(catalog.SCHEMA_VERSION) == "5"
