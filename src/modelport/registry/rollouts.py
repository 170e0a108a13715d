"""Rollouts in the catalogue: one row each, an append-only decision log, window tallies, leases.

    store = RolloutStore(registry)
    r = store.create("digits", alias="production", stable=3, candidate=4, ...)   # 409 if active
    store.update(r, state="canary", step=1, decision=("advance", "controller", evidence))
    store.decisions(r.id)
    store.lease("rollouts", holder="host-a:123", ttl=3.0)       # True while this holder leads

The rows are plain data (plan, gates and progress as JSON); ``modelport.rollouts`` gives them
meaning. Every change is a compare-and-set on (state, step), so two writers never both win.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from modelport.errors import Conflict, NotFound
from modelport.registry import catalog as c
from modelport.registry.records import as_utc

if TYPE_CHECKING:
    from modelport.registry.registry import Registry

ACTIVE_STATES = ("shadow", "canary", "paused")


@dataclass(frozen=True)
class Rollout:
    id: int
    name: str
    alias: str
    stable: int
    candidate: int
    candidate_alias: str | None
    plan: dict[str, Any]
    gates: dict[str, Any]
    state: str
    step: int
    progress: dict[str, Any]
    reason: str
    created_at: datetime
    updated_at: datetime
    created_by: str

    @property
    def active(self) -> bool:
        return self.state in ACTIVE_STATES

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass(frozen=True)
class RolloutDecision:
    at: datetime
    actor: str
    action: str
    from_state: str
    to_state: str
    evidence: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


class RolloutStore:
    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self.engine = registry.engine

    def create(self, name: str, *, alias: str, stable: int, candidate: int,
               candidate_alias: str | None, plan: dict, gates: dict, state: str,
               progress: dict, evidence: dict) -> Rollout:  # fmt: skip
        """A new active rollout of ``name``; Conflict (409) while another one is active."""

        def work(conn: Connection) -> int:
            model_id = self.registry._model_id(conn, name)
            self._refuse_second(conn, model_id, name)
            now = c.utcnow()
            rollout_id = conn.execute(sa.insert(c.rollouts).values(
                model_id=model_id, active_model_id=model_id, alias=alias, stable=stable,
                candidate=candidate, candidate_alias=candidate_alias, plan=plan, gates=gates,
                state=state, step=0, progress=progress, reason="", created_at=now,
                updated_at=now, created_by=self.registry.settings.user,
            )).inserted_primary_key[0]  # fmt: skip
            self._decide(conn, rollout_id, self.registry.settings.user, "start", "-", state,
                         evidence)  # fmt: skip
            return rollout_id

        return self.get(c.write(self.engine, work))

    def refuse_second(self, name: str) -> None:
        """Conflict (409) if ``name`` has an active rollout."""
        with self.engine.connect() as conn:
            self._refuse_second(conn, self.registry._model_id(conn, name), name)

    def _refuse_second(self, conn: Connection, model_id: int, name: str) -> None:
        r = c.rollouts
        active = conn.execute(
            sa.select(r.c.id, r.c.candidate, r.c.state).where(r.c.active_model_id == model_id)
        ).first()
        if active is not None:
            raise Conflict(
                f"model {name!r} already has an active rollout (#{active.id}, candidate "
                f"{name}:{active.candidate}, {active.state}); finish or abort it first"
            )

    def get(self, rollout_id: int) -> Rollout:
        rows = self._select(c.rollouts.c.id == rollout_id)
        if not rows:
            raise NotFound(f"rollout #{rollout_id} not found")
        return rows[0]

    def latest(self, name: str) -> Rollout:
        """The model's active rollout, else its most recent one."""
        rows = self._select(c.models.c.name == name)
        if not rows:
            with self.engine.connect() as conn:
                self.registry._model_id(conn, name)  # NotFound with a hint for unknown models
            raise NotFound(f"model {name!r} has no rollouts")
        active = [r for r in rows if r.active]
        return active[0] if active else rows[0]

    def list(self, name: str | None = None, active_only: bool = False) -> list[Rollout]:
        where = sa.true() if name is None else c.models.c.name == name
        if active_only:
            where = where & c.rollouts.c.active_model_id.is_not(None)
        return self._select(where)

    def _select(self, where: Any) -> list[Rollout]:
        r, m = c.rollouts, c.models
        query = (
            sa.select(r, m.c.name).join(m, m.c.id == r.c.model_id).where(where)
            .order_by(r.c.id.desc())
        )  # fmt: skip
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        return [
            Rollout(
                id=row.id,
                name=row.name,
                alias=row.alias,
                stable=row.stable,
                candidate=row.candidate,
                candidate_alias=row.candidate_alias,
                plan=row.plan,
                gates=row.gates,
                state=row.state,
                step=row.step,
                progress=row.progress,
                reason=row.reason,
                created_at=as_utc(row.created_at),
                updated_at=as_utc(row.updated_at),
                created_by=row.created_by,
            )  # fmt: skip
            for row in rows
        ]

    def update(
        self,
        rollout: Rollout,
        *,
        state: str | None = None,
        step: int | None = None,
        progress: dict | None = None,
        reason: str | None = None,
        decision: tuple[str, str, dict] | None = None,
    ) -> Rollout:
        """Change a rollout if it is still in the (state, step) ``rollout`` was read in; else
        Conflict. ``decision`` (action, actor, evidence) is appended to the log in the same
        transaction."""
        values: dict[str, Any] = {"updated_at": c.utcnow()}
        for key, value in (("state", state), ("step", step), ("progress", progress),
                           ("reason", reason)):  # fmt: skip
            if value is not None:
                values[key] = value
        new_state = values.get("state", rollout.state)
        if new_state not in ACTIVE_STATES:
            values["active_model_id"] = None

        def work(conn: Connection) -> None:
            r = c.rollouts
            done = conn.execute(
                sa.update(r).where(
                    (r.c.id == rollout.id) & (r.c.state == rollout.state)
                    & (r.c.step == rollout.step)
                ).values(**values)
            ).rowcount  # fmt: skip
            if not done:
                now = self.get(rollout.id)
                raise Conflict(
                    f"rollout #{rollout.id} changed meanwhile (it is {now.state}, step "
                    f"{now.step + 1}); nothing was done"
                )
            if decision is not None:
                action, actor, evidence = decision
                self._decide(conn, rollout.id, actor, action, rollout.state, new_state, evidence)

        c.write(self.engine, work, attempts=5)
        return self.get(rollout.id)

    def _decide(self, conn: Connection, rollout_id: int, actor: str, action: str,
                from_state: str, to_state: str, evidence: dict) -> None:  # fmt: skip
        conn.execute(sa.insert(c.rollout_decisions).values(
            rollout_id=rollout_id, at=c.utcnow(), actor=actor, action=action,
            from_state=from_state, to_state=to_state, evidence=evidence,
        ))  # fmt: skip

    def decisions(self, rollout_id: int) -> list[RolloutDecision]:
        d = c.rollout_decisions
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(d).where(d.c.rollout_id == rollout_id).order_by(d.c.id)
            ).all()
        return [
            RolloutDecision(
                as_utc(r.at), r.actor, r.action, r.from_state, r.to_state, r.evidence
            )  # fmt: skip
            for r in rows
        ]

    # -- window tallies ------------------------------------------------------------------------

    def report(self, rollout_id: int, window: int, replica: str, tally: dict) -> None:
        """Store one replica's tally of one window (replacing an earlier report of it)."""
        w = c.rollout_windows
        key = (w.c.rollout_id == rollout_id) & (w.c.window == window) & (w.c.replica == replica)

        def work(conn: Connection) -> None:
            conn.execute(sa.delete(w).where(key))
            conn.execute(sa.insert(w).values(
                rollout_id=rollout_id, window=window, replica=replica, tally=tally
            ))  # fmt: skip

        c.write(self.engine, work)

    def windows(self, rollout_id: int, since: int = 0) -> list[tuple[int, str, dict]]:
        """(window start ms, replica, tally) from ``since`` on, oldest first."""
        w = c.rollout_windows
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(w.c.window, w.c.replica, w.c.tally)
                .where((w.c.rollout_id == rollout_id) & (w.c.window >= since))
                .order_by(w.c.window)
            ).all()
        return [(int(r.window), r.replica, r.tally) for r in rows]

    # -- leases --------------------------------------------------------------------------------

    def lease(self, name: str, holder: str, ttl: float) -> bool:
        """Take or renew lease ``name`` for ``ttl`` seconds; False while another holder has it."""
        leases = c.leases

        def work(conn: Connection) -> bool:
            now = time.time()
            query = sa.select(leases).where(leases.c.name == name)
            if self.engine.dialect.name == "postgresql":
                query = query.with_for_update()
            row = conn.execute(query).first()
            if row is None:
                conn.execute(sa.insert(leases).values(name=name, holder=holder,
                                                      expires_at=now + ttl))  # fmt: skip
                return True
            if row.holder != holder and row.expires_at > now:
                return False
            conn.execute(sa.update(leases).where(leases.c.name == name).values(
                holder=holder, expires_at=now + ttl))  # fmt: skip
            return True

        return c.write(self.engine, work)

    def release(self, name: str, holder: str) -> None:
        leases = c.leases
        c.write(self.engine, lambda conn: conn.execute(sa.delete(leases).where(
            (leases.c.name == name) & (leases.c.holder == holder))))  # fmt: skip

    def holder(self, name: str) -> str | None:
        leases = c.leases
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(leases).where(leases.c.name == name)).first()
        return row.holder if row is not None and row.expires_at > time.time() else None
