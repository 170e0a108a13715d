"""The audit log on SQLite and PostgreSQL: registry writes record who, when, from where and what
in the same transaction; the database refuses to change or remove an entry; an older catalogue
gains the table; ``modelport audit`` filters and prints it."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from modelport.errors import Conflict
from modelport.importers.onnx import from_path
from modelport.registry import Registry
from modelport.registry import audit as a
from modelport.registry import catalog as c
from tests.conftest import invoke_cli, make_mlp_onnx


@pytest.fixture
def two_versions(registry: Registry, tmp_path) -> Registry:
    registry.add(from_path(make_mlp_onnx(tmp_path / "a.onnx", seed=1)), "mlp", alias="production")
    registry.add(from_path(make_mlp_onnx(tmp_path / "b.onnx", seed=2)), "mlp")
    return registry


def test_registry_writes_are_recorded_with_who_where_and_what(two_versions: Registry) -> None:
    reg = two_versions
    reg.set_alias("mlp", "production", 2)
    reg.rollback("mlp", "production")
    with a.acting_as("ops", "10.1.2.3:5555"):
        reg.set_alias("mlp", "staging", 2)
    reg.remove_alias("mlp", "staging")
    reg.delete("mlp:2")
    entries = reg.audit.entries()
    assert [e.action for e in entries] == [
        "register", "alias_set", "register", "alias_set", "rollback", "alias_set", "alias_remove",
        "delete"]  # fmt: skip
    by_action = {e.action: e for e in entries}
    moved = [e for e in entries if e.action == "alias_set"][1]
    assert (moved.actor, moved.source, moved.model, moved.target) == (
        "tester", "cli", "mlp", "production")  # fmt: skip
    assert moved.detail == {"version": 2, "from_version": 1}
    assert by_action["rollback"].detail == {"version": 1, "from_version": 2}
    staged = [e for e in entries if e.target == "staging"][0]
    assert (staged.actor, staged.source) == ("ops", "10.1.2.3:5555")
    assert by_action["delete"].target == "version 2" and by_action["delete"].actor == "tester"
    assert all(e.at.tzinfo is not None and abs(e.at - datetime.now(UTC)) < timedelta(minutes=5)
               for e in entries)  # fmt: skip
    assert [e.action for e in reg.audit.entries(action="rollback", model="mlp")] == ["rollback"]
    assert reg.audit.entries(model="other") == []
    assert reg.audit.entries(since=datetime.now(UTC) + timedelta(hours=1)) == []
    assert len(reg.audit.entries(since=datetime.now(UTC) - timedelta(hours=1))) == 8


def test_a_refused_write_leaves_no_entry(two_versions: Registry) -> None:
    before = len(two_versions.audit.entries())
    with pytest.raises(Conflict):
        two_versions.delete("mlp:1")  # production points at it
    assert len(two_versions.audit.entries()) == before


@pytest.mark.parametrize("statement", [
    "UPDATE audit_log SET actor = 'nobody'",
    "DELETE FROM audit_log",
    "DELETE FROM audit_log WHERE action = 'register'",
])  # fmt: skip
def test_the_database_refuses_to_edit_or_delete_entries(two_versions: Registry, statement) -> None:
    before = two_versions.audit.entries()
    with pytest.raises(sa.exc.DBAPIError, match="append-only"):
        with two_versions.engine.begin() as conn:
            conn.exec_driver_sql(statement)
    assert two_versions.audit.entries() == before and len(before) == 3


def test_postgres_refuses_truncate(postgres, tmp_path) -> None:
    from modelport.settings import Settings

    database = postgres.create_database()
    reg = Registry(Settings(home=tmp_path / "h", database_url=postgres.url(database), user="t"))
    try:
        reg.add(from_path(make_mlp_onnx(tmp_path / "m.onnx")), "mlp")
        with pytest.raises(sa.exc.DBAPIError, match="append-only"):
            with reg.engine.begin() as conn:
                conn.exec_driver_sql("TRUNCATE audit_log")
        assert len(reg.audit.entries()) == 1
    finally:
        reg.close()
        postgres.drop_database(database)


def test_a_version_3_catalogue_gains_the_audit_log(registry: Registry, mlp_path) -> None:
    registry.add(from_path(mlp_path), "mlp")
    with registry.engine.begin() as conn:  # the layout of schema version 3: no audit table
        if registry.engine.dialect.name == "postgresql":
            conn.exec_driver_sql("DROP TABLE audit_log")
            conn.exec_driver_sql("DROP FUNCTION audit_log_append_only()")
        else:
            conn.exec_driver_sql("DROP TRIGGER audit_log_no_delete")
            conn.exec_driver_sql("DROP TABLE audit_log")
        conn.execute(sa.update(c.meta).values(value="3"))
    upgraded = Registry(registry.settings)
    try:
        with upgraded.engine.connect() as conn:
            assert conn.execute(sa.select(c.meta.c.value)).scalar() == str(c.SCHEMA_VERSION)
        upgraded.set_alias("mlp", "production", 1)
        assert [e.action for e in upgraded.audit.entries()] == ["alias_set"]
        with pytest.raises(sa.exc.DBAPIError, match="append-only"):
            with upgraded.engine.begin() as conn:
                conn.exec_driver_sql("DELETE FROM audit_log")
    finally:
        upgraded.close()


def test_cli_lists_and_filters(sqlite_registry: Registry, tmp_path, monkeypatch, capsys) -> None:
    reg = sqlite_registry
    reg.add(from_path(make_mlp_onnx(tmp_path / "a.onnx")), "mlp", alias="production")
    reg.add(from_path(make_mlp_onnx(tmp_path / "b.onnx", seed=3)), "other")
    home = str(reg.settings.home)
    code, out, _ = invoke_cli(monkeypatch, capsys, "--home", home, "audit", "--json",
                              "--action", "alias_set")  # fmt: skip
    rows = json.loads(out)
    assert code == 0 and [(r["action"], r["model"], r["target"]) for r in rows] == [
        ("alias_set", "mlp", "production")]  # fmt: skip
    assert rows[0]["source"] == "cli" and rows[0]["detail"] == {"version": 1}
    code, out, _ = invoke_cli(monkeypatch, capsys, "--home", home, "audit", "--since", "1h")
    assert code == 0 and "audit log" in out and "other" in out and "production" in out
    code, out, _ = invoke_cli(monkeypatch, capsys, "--home", home, "audit", "--model", "nope")
    assert code == 0 and "no audit entries match" in out
    code, _, err = invoke_cli(monkeypatch, capsys, "--home", home, "audit", "--since", "soon")
    assert code != 0 and err.count("\n") == 1 and "--since 'soon'" in err
