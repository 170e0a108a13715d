"""The fleet's state in the registry: devices, releases, deployments; one method per action.

fleet = Fleet(registry)
token = fleet.create_token("cameras")
device_id, secret = fleet.enroll(token, {"id": "cam-1", "hardware": "arm", ...})
release = fleet.add_release(Path("digits-arm.bundle"))
fleet.deploy("digits@production", groups=["cameras"], waves=[10, 50, 100], wait=60,
             variants={"arm": release["id"]})
fleet.poll(device)  ->  the release the device should run, or None
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import tempfile
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from modelport.edge.fleet.devices import parse_enrollment
from modelport.edge.fleet.waves import wave_members
from modelport.errors import Forbidden, InvalidInput, NotFound, Unauthorized
from modelport.registry import catalog as c
from modelport.registry import fleet as t

_a, _d = t.assignments, t.deployments
_DESIRED = (
    sa.select(
        _a.c.release_id,
        _a.c.previous_id,
        _a.c.status,
        _a.c.wave,
        _d.c.state,
        _d.c.wave.label("current_wave"),
    )
    .join(_d, _d.c.id == _a.c.deployment_id)
    .where(_a.c.device_id == sa.bindparam("device"))
    .order_by(_a.c.deployment_id.desc())
    .limit(1)
)  # the newest deployment that has the device


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


class Fleet:
    def __init__(self, registry: Any) -> None:
        self.registry = registry
        self.engine = registry.engine
        self.blobs = registry.blobs
        self._releases: dict[int, dict[str, Any]] = {}  # immutable rows, cached
        self._served: set[str] = set()  # digests that belong to a release
        self._seen: dict[str, Any] = {}  # device id -> last poll, not yet written

    def flush_seen(self) -> int:
        """Write the last-poll times gathered since the previous flush; returns how many."""
        seen, self._seen = self._seen, {}
        if seen:
            rows = [{"key": k, "at": v} for k, v in seen.items()]
            update = (
                sa.update(t.devices)
                .where(t.devices.c.id == sa.bindparam("key"))
                .values(last_seen=sa.bindparam("at"))
            )
            c.write(self.engine, lambda conn: conn.execute(update, rows))
        return len(seen)

    # -- enrollment and authentication ---------------------------------------------------------

    def create_token(self, label: str) -> str:
        token = "mpe_" + secrets.token_urlsafe(24)
        c.write(
            self.engine,
            lambda conn: conn.execute(
                sa.insert(t.tokens).values(
                    sha256=_sha(token), label=label, created_at=c.utcnow(), revoked=False
                )
            ),
        )
        return token

    def enroll(self, token: str, body: dict[str, Any]) -> tuple[str, str]:
        info = parse_enrollment(body)
        secret = secrets.token_urlsafe(24)

        def work(conn: Connection) -> None:
            row = conn.execute(sa.select(t.tokens).where(t.tokens.c.sha256 == _sha(token))).first()
            if row is None or row.revoked:
                raise Unauthorized("the enrollment token is unknown or revoked")
            old = conn.execute(sa.select(t.devices.c.revoked).where(t.devices.c.id == info["id"]))
            old_row = old.first()
            if old_row is not None and old_row.revoked:
                raise Forbidden(f"device {info['id']} is revoked")
            values = {**{k: v for k, v in info.items() if k != "id"}, "secret_sha256": _sha(secret)}
            if old_row is None:
                conn.execute(
                    sa.insert(t.devices).values(
                        id=info["id"],
                        enrolled_at=c.utcnow(),
                        revoked=False,
                        health="unknown",
                        metrics={},
                        **values,
                    )
                )
            else:
                conn.execute(
                    sa.update(t.devices).where(t.devices.c.id == info["id"]).values(**values)
                )

        c.write(self.engine, work)
        return info["id"], secret

    def authenticate(self, token: str, conn: Connection | None = None) -> Any:
        """The device row for ``"<device id>:<secret>"``; 401 unknown, 403 revoked."""
        device_id, _, secret = token.partition(":")
        if conn is None:
            with self.engine.connect() as own:
                return self.authenticate(token, own)
        row = conn.execute(sa.select(t.devices).where(t.devices.c.id == device_id)).first()
        if row is None or not hmac.compare_digest(row.secret_sha256, _sha(secret)):
            raise Unauthorized("unknown device or wrong device secret")
        if row.revoked:
            raise Forbidden(f"device {device_id} is revoked")
        return row

    def revoke_device(self, device_id: str) -> None:
        def work(conn: Connection) -> None:
            done = conn.execute(
                sa.update(t.devices).where(t.devices.c.id == device_id).values(revoked=True)
            )
            if done.rowcount == 0:
                raise NotFound(f"no device {device_id!r}")

        c.write(self.engine, work)

    def devices(self) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(t.devices).order_by(t.devices.c.id)).mappings().all()
        return [{str(k): v for k, v in r.items() if k != "secret_sha256"} for r in rows]

    # -- releases ------------------------------------------------------------------------------

    def add_release(self, bundle: Path) -> dict[str, Any]:
        """Store a bundle's files by content address; its signature is the devices' to check."""
        from modelport.edge.bundle import MANIFEST, unpack

        with tempfile.TemporaryDirectory(dir=self.blobs.tmp) as tmp:
            folder = unpack(Path(bundle), Path(tmp) / "b")
            import json

            manifest = json.loads((folder / "targets" / MANIFEST).read_text())
            files = []
            for path in sorted(p for p in (folder / "targets").rglob("*") if p.is_file()):
                digest, size = self.blobs.put_file(path)
                files.append(
                    {
                        "path": path.relative_to(folder / "targets").as_posix(),
                        "sha256": digest,
                        "size": size,
                    }
                )
            meta = {}
            for path in (folder / "metadata").iterdir():
                digest, size = self.blobs.put_file(path)
                meta[path.name] = {"sha256": digest, "size": size}
        row = {
            "number": int(manifest["release"]),
            "name": manifest["name"],
            "model": manifest["model"],
            "format": manifest["format"],
            "precision": manifest.get("precision", "fp32"),
            "size": sum(f["size"] for f in files),
            "files": files,
            "metadata": meta,
        }
        new_id = c.write(
            self.engine,
            lambda conn: conn.execute(
                sa.insert(t.releases).values(created_at=c.utcnow(), **row)
            ).inserted_primary_key[0],
        )
        return self.release(new_id)

    def release(self, release_id: int) -> dict[str, Any]:
        cached = self._releases.get(release_id)
        if cached is None:
            with self.engine.connect() as conn:
                row = conn.execute(sa.select(t.releases).where(t.releases.c.id == release_id))
                found = row.mappings().first()
            if found is None:
                raise NotFound(f"no release {release_id}")
            cached = self._releases[release_id] = {
                str(k): v for k, v in found.items() if k != "created_at"
            }
        return cached

    def releases(self) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            ids = conn.execute(sa.select(t.releases.c.id).order_by(t.releases.c.id)).scalars()
            return [self.release(i) for i in ids.all()]

    def blob(self, digest: str) -> Path:
        """The file of a digest that belongs to a release (nothing else in the store is served)."""
        if digest not in self._served:
            self._served = {
                d
                for r in self.releases()
                for d in [
                    *(f["sha256"] for f in r["files"]),
                    *(m["sha256"] for m in r["metadata"].values()),
                ]
            }
            if digest not in self._served:
                raise NotFound(f"no release file with sha256 {digest}")
        return self.blobs.path(digest)

    # -- what a device does --------------------------------------------------------------------

    def poll(self, token: str) -> dict[str, Any] | None:
        """The release the device with ``token`` should run now (None: keep what it has); one
        connection, two indexed reads, no write (last-poll times are flushed in batches)."""
        with self.engine.connect() as conn:
            device = self.authenticate(token, conn)
            row = conn.execute(_DESIRED, {"device": device.id}).first()
        self._seen[device.id] = c.utcnow()
        if row is None or row.wave > row.current_wave:
            return None
        if row.state == "rolled-back":
            wanted = row.previous_id
        elif row.state == "halted" and row.status != "ok":
            wanted = None
        else:
            wanted = row.release_id
        return None if wanted is None else self.release(wanted)

    def report(self, device: Any, report: dict[str, Any]) -> None:
        outcome = report.pop("outcome")

        def work(conn: Connection) -> int | None:
            conn.execute(
                sa.update(t.devices)
                .where(t.devices.c.id == device.id)
                .values(last_seen=c.utcnow(), **report)
            )
            if outcome is None:
                return None
            a = t.assignments
            row = conn.execute(
                sa.select(a.c.deployment_id)
                .where(a.c.device_id == device.id, a.c.release_id == outcome["release"])
                .order_by(a.c.deployment_id.desc())
                .limit(1)
            ).first()
            if row is None:
                return None
            conn.execute(
                sa.update(a)
                .where(a.c.deployment_id == row.deployment_id, a.c.device_id == device.id)
                .values(
                    status="ok" if outcome["ok"] else "failed",
                    error=None if outcome["ok"] else outcome["reason"],
                    updated_at=c.utcnow(),
                )
            )
            return row.deployment_id

        deployment = c.write(self.engine, work)
        if deployment is not None:
            from modelport.edge.fleet.control import tick

            tick(self, deployment)

    # -- deployments ---------------------------------------------------------------------------

    def deploy(
        self,
        model: str,
        groups: list[str],
        waves: list[float],
        wait: float,
        variants: dict[str, int],
        threshold: float = 0.2,
    ) -> int:
        if not groups:
            raise InvalidInput("a deployment needs at least one --group")
        if not variants:
            raise InvalidInput("a deployment needs at least one --variant")
        if not 0 <= threshold < 1:
            raise InvalidInput(f"the failure threshold must be in [0, 1), got {threshold}")
        for release_id in variants.values():
            self.release(release_id)
        members = [d for d in self.devices() if not d["revoked"] and set(groups) & set(d["tags"])]
        if not members:
            raise NotFound(f"no enrolled device is in group(s) {', '.join(groups)}")

        def work(conn: Connection) -> int:
            new = conn.execute(
                sa.insert(t.deployments).values(
                    model=model,
                    groups=groups,
                    waves=waves,
                    wait_s=wait,
                    threshold=threshold,
                    variants=variants,
                    state="running",
                    wave=0,
                    wave_started_at=c.utcnow(),
                    created_at=c.utcnow(),
                )
            ).inserted_primary_key[0]
            by_id = {d["id"]: d for d in members}
            plan = wave_members(sorted(by_id), waves, salt=f"deployment-{new}")
            for index, ids in enumerate(plan):
                for device_id in ids:
                    device = by_id[device_id]
                    release = variants.get(device["hardware"])
                    conn.execute(
                        sa.insert(t.assignments).values(
                            deployment_id=new,
                            device_id=device_id,
                            wave=index,
                            release_id=release,
                            previous_id=device["current"],
                            updated_at=c.utcnow(),
                            status="pending" if release else "skipped",
                            error=None if release else f"no variant for {device['hardware']}",
                        )
                    )
            return new

        return c.write(self.engine, work)
