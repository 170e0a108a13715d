"""Moving a deployment along: the next wave, a halt on failures, and the operator's commands.

tick(fleet, 7)                  # after each report, and once a second in the server
status(fleet, 7)                # per wave and per device
command(fleet, 7, "halt")       # or "resume", "rollback"
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from modelport.edge.fleet.waves import Wave, decide
from modelport.errors import Conflict, InvalidInput, NotFound
from modelport.registry import catalog as c
from modelport.registry import fleet as t
from modelport.registry.records import as_utc

COMMANDS = {"halt": ("running",), "resume": ("halted",), "rollback": ("running", "halted", "done")}


def _deployment(conn: Connection, deployment_id: int) -> Any:
    row = conn.execute(sa.select(t.deployments).where(t.deployments.c.id == deployment_id)).first()
    if row is None:
        raise NotFound(f"no deployment {deployment_id}")
    return row


def _waves(conn: Connection, deployment: Any) -> list[Wave]:
    a = t.assignments
    rows = conn.execute(
        sa.select(a.c.wave, a.c.status, sa.func.count())
        .where(a.c.deployment_id == deployment.id)
        .group_by(a.c.wave, a.c.status)
    ).all()
    counts: dict[int, dict[str, int]] = {}
    for wave, state, n in rows:
        counts.setdefault(wave, {})[state] = n
    return [
        Wave(
            i,
            sum(v for k, v in counts.get(i, {}).items() if k != "skipped"),
            counts.get(i, {}).get("ok", 0),
            counts.get(i, {}).get("failed", 0),
            counts.get(i, {}).get("pending", 0),
        )
        for i in range(len(deployment.waves))
    ]


def tick(fleet: Any, deployment_id: int, now: datetime | None = None) -> str:
    """Apply ``waves.decide`` to a running deployment once; returns its state afterwards."""

    def work(conn: Connection) -> str:
        row = _deployment(conn, deployment_id)
        if row.state != "running":
            return row.state
        waves = _waves(conn, row)
        elapsed = ((now or c.utcnow()) - as_utc(row.wave_started_at)).total_seconds()
        decision = decide(
            waves[row.wave], elapsed, row.wait_s, row.threshold, last=row.wave == len(waves) - 1
        )
        values: dict[str, Any] = {}
        if decision.action == "halt":
            values = {"state": "halted", "reason": decision.reason}
        elif decision.action == "next":
            values = {"wave": row.wave + 1, "wave_started_at": c.utcnow()}
        elif decision.action == "done":
            values = {"state": "done"}
        if values:
            conn.execute(
                sa.update(t.deployments).where(t.deployments.c.id == row.id).values(**values)
            )
        return values.get("state", row.state)

    return c.write(fleet.engine, work)


def running(fleet: Any) -> list[int]:
    with fleet.engine.connect() as conn:
        return list(
            conn.execute(
                sa.select(t.deployments.c.id).where(t.deployments.c.state == "running")
            ).scalars()
        )


def command(fleet: Any, deployment_id: int, action: str) -> str:
    """halt (no new device starts), resume (failed devices of the wave retry), rollback
    (every device of the deployment goes back to the release it ran before)."""
    if action not in COMMANDS:
        raise InvalidInput(f"unknown command {action!r}; one of {', '.join(COMMANDS)}")

    def work(conn: Connection) -> str:
        row = _deployment(conn, deployment_id)
        if row.state not in COMMANDS[action]:
            raise Conflict(f"deployment {deployment_id} is {row.state}; cannot {action} it")
        state = {"halt": "halted", "resume": "running", "rollback": "rolled-back"}[action]
        values: dict[str, Any] = {"state": state, "reason": f"{action} by operator"}
        if action == "resume":
            values["wave_started_at"] = c.utcnow()
            a = t.assignments
            conn.execute(
                sa.update(a)
                .where(a.c.deployment_id == row.id, a.c.wave == row.wave, a.c.status == "failed")
                .values(status="pending", updated_at=c.utcnow())
            )
        conn.execute(sa.update(t.deployments).where(t.deployments.c.id == row.id).values(**values))
        return state

    return c.write(fleet.engine, work)


def status(fleet: Any, deployment_id: int | None = None) -> dict[str, Any]:
    """A deployment (the newest when None) with its waves and each device's assignment."""
    with fleet.engine.connect() as conn:
        if deployment_id is None:
            deployment_id = conn.execute(sa.select(sa.func.max(t.deployments.c.id))).scalar()
            if deployment_id is None:
                raise NotFound("no deployment yet; start one with: modelport fleet deploy")
        row = _deployment(conn, deployment_id)
        waves = _waves(conn, row)
        a, dv = t.assignments, t.devices
        devices = (
            conn.execute(
                sa.select(a, dv.c.current, dv.c.health, dv.c.hardware)
                .join(dv, dv.c.id == a.c.device_id)
                .where(a.c.deployment_id == row.id)
                .order_by(a.c.wave, a.c.device_id)
            )
            .mappings()
            .all()
        )
    return {
        "id": row.id,
        "model": row.model,
        "state": row.state,
        "reason": row.reason,
        "groups": row.groups,
        "variants": row.variants,
        "wave": row.wave,
        "waves": [
            {
                "percent": p,
                "size": w.size,
                "ok": w.ok,
                "failed": w.failed,
                "pending": w.pending,
                "started": i <= row.wave,
            }
            for p, w, i in zip(row.waves, waves, range(len(waves)), strict=True)
        ],
        "devices": [dict(d) for d in devices],
    }
