"""The catalogue records its schema version: older ones are upgraded once, in one transaction;
newer ones are refused untouched."""

from __future__ import annotations

import threading

import pytest
import sqlalchemy as sa

from modelport.errors import BackendError
from modelport.importers.onnx import from_path
from modelport.registry import Registry
from modelport.registry import catalog as c
from tests.conftest import invoke_cli


def _stored(registry: Registry) -> str:
    with registry.engine.connect() as conn:
        return conn.execute(
            sa.select(c.meta.c.value).where(c.meta.c.key == "schema_version")
        ).one()[0]


def _set_stored(registry: Registry, value: int | None) -> None:
    with registry.engine.begin() as conn:
        if value is None:
            conn.execute(sa.text("DROP TABLE meta"))
        else:
            conn.execute(sa.update(c.meta).values(value=str(value)))


def _columns(registry: Registry, table: str) -> set[str]:
    with registry.engine.connect() as conn:
        return {col["name"] for col in sa.inspect(conn).get_columns(table)}


def _add_note_column(calls: list[int]):
    def step(conn: sa.Connection) -> None:
        calls.append(1)
        conn.execute(sa.text("ALTER TABLE versions ADD COLUMN note VARCHAR(64)"))

    return step


def test_a_fresh_catalogue_records_the_current_schema(registry):
    assert _stored(registry) == str(c.SCHEMA_VERSION)
    reopened = Registry(registry.settings)
    assert _stored(reopened) == str(c.SCHEMA_VERSION)
    reopened.close()


def test_a_catalogue_from_a_newer_release_is_refused_untouched(registry, mlp_path):
    registry.add(from_path(mlp_path), "mlp")
    _set_stored(registry, c.SCHEMA_VERSION + 1)
    with pytest.raises(BackendError, match="written by a newer modelport.*upgrade modelport"):
        Registry(registry.settings)
    assert _stored(registry) == str(c.SCHEMA_VERSION + 1)
    with registry.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(c.versions)).scalar() == 1


def test_the_cli_says_so_in_one_line(sqlite_registry, monkeypatch, capsys):
    _set_stored(sqlite_registry, c.SCHEMA_VERSION + 1)
    code, _, err = invoke_cli(
        monkeypatch, capsys, "--home", str(sqlite_registry.settings.home), "list"
    )
    assert code == 1 and err.count("\n") == 1
    assert err.startswith("error: cannot open the catalogue") and "newer modelport" in err


@pytest.mark.parametrize("recorded", [True, False], ids=["recorded", "from-before-versions"])
def test_an_older_catalogue_is_upgraded_once_and_keeps_its_data(
    registry, mlp_path, monkeypatch, recorded
):
    version = registry.add(from_path(mlp_path), "mlp")
    registry.set_alias("mlp", "production", version.version)
    if not recorded:  # made before the schema version was kept: its layout is version 1
        _set_stored(registry, None)
    calls: list[int] = []
    upcoming = c.SCHEMA_VERSION + 1
    monkeypatch.setattr(c, "SCHEMA_VERSION", upcoming)
    monkeypatch.setattr(c, "MIGRATIONS", {**c.MIGRATIONS, upcoming: _add_note_column(calls)})

    openers = [
        threading.Thread(target=lambda: Registry(registry.settings).close()) for _ in range(4)
    ]
    for t in openers:
        t.start()
    for t in openers:
        t.join()
    assert calls == [1]
    upgraded = Registry(registry.settings)
    assert calls == [1] and _stored(upgraded) == str(upcoming)
    assert "note" in _columns(upgraded, "versions")
    assert upgraded.resolve("mlp@production").sha256 == version.sha256
    assert upgraded.path("mlp:1").read_bytes() == mlp_path.read_bytes()
    upgraded.close()


def test_a_failed_upgrade_changes_nothing(registry, mlp_path, monkeypatch):
    registry.add(from_path(mlp_path), "mlp")

    def half_done(conn: sa.Connection) -> None:
        conn.execute(sa.text("ALTER TABLE versions ADD COLUMN note VARCHAR(64)"))
        raise RuntimeError("disk full")

    upcoming = c.SCHEMA_VERSION + 1
    monkeypatch.setattr(c, "SCHEMA_VERSION", upcoming)
    monkeypatch.setattr(c, "MIGRATIONS", {**c.MIGRATIONS, upcoming: half_done})
    with pytest.raises(BackendError, match=f"from version {upcoming - 1} to {upcoming} failed, "
                       "nothing was changed: disk"):  # fmt: skip
        Registry(registry.settings)
    assert _stored(registry) == str(upcoming - 1) and "note" not in _columns(registry, "versions")
    calls: list[int] = []
    monkeypatch.setattr(c, "MIGRATIONS", {**c.MIGRATIONS, upcoming: _add_note_column(calls)})
    retried = Registry(registry.settings)
    assert calls == [1] and _stored(retried) == str(upcoming)
    assert len(retried.list_versions("mlp")) == 1
    retried.close()
