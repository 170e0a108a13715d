"""Catalogue tables of the edge fleet: enrollment tokens, devices, releases, deployments and
each device's assignment in a deployment. Schema version 2 added them."""

from __future__ import annotations

import sqlalchemy as sa

from modelport.registry.catalog import metadata

_WHEN = sa.DateTime(timezone=True)

tokens = sa.Table(
    "fleet_tokens",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("sha256", sa.String(64), nullable=False, unique=True),
    sa.Column("label", sa.String(128), nullable=False),
    sa.Column("created_at", _WHEN, nullable=False),
    sa.Column("revoked", sa.Boolean, nullable=False, default=False),
)

devices = sa.Table(
    "fleet_devices",
    metadata,
    sa.Column("id", sa.String(128), primary_key=True),
    sa.Column("secret_sha256", sa.String(64), nullable=False),
    sa.Column("hardware", sa.String(64), nullable=False),
    sa.Column("runtimes", sa.JSON, nullable=False),
    sa.Column("ram_mb", sa.Integer, nullable=False),
    sa.Column("cpu_flags", sa.JSON, nullable=False),
    sa.Column("tags", sa.JSON, nullable=False),
    sa.Column("revoked", sa.Boolean, nullable=False, default=False),
    sa.Column("enrolled_at", _WHEN, nullable=False),
    sa.Column("last_seen", _WHEN),
    sa.Column("current", sa.Integer),  # release id
    sa.Column("staged", sa.Integer),
    sa.Column("health", sa.String(32), nullable=False, default="unknown"),
    sa.Column("last_error", sa.Text),
    sa.Column("metrics", sa.JSON, nullable=False, default=dict),
)

releases = sa.Table(
    "fleet_releases",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("number", sa.Integer, nullable=False),  # the signed metadata version
    sa.Column("name", sa.String(128), nullable=False),
    sa.Column("model", sa.String(160), nullable=False),
    sa.Column("format", sa.String(32), nullable=False),
    sa.Column("precision", sa.String(16), nullable=False),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("files", sa.JSON, nullable=False),  # [{path, sha256, size}]
    sa.Column("metadata", sa.JSON, nullable=False),  # {file name: sha256}
    sa.Column("created_at", _WHEN, nullable=False),
)

deployments = sa.Table(
    "fleet_deployments",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("model", sa.String(160), nullable=False),
    sa.Column("groups", sa.JSON, nullable=False),
    sa.Column("waves", sa.JSON, nullable=False),  # cumulative percents
    sa.Column("wait_s", sa.Float, nullable=False),
    sa.Column("threshold", sa.Float, nullable=False),
    sa.Column("variants", sa.JSON, nullable=False),  # {hardware class: release id}
    sa.Column("state", sa.String(16), nullable=False),  # running|halted|done|rolled-back
    sa.Column("wave", sa.Integer, nullable=False),
    sa.Column("wave_started_at", _WHEN, nullable=False),
    sa.Column("reason", sa.Text),
    sa.Column("created_at", _WHEN, nullable=False),
)

assignments = sa.Table(
    "fleet_assignments",
    metadata,
    sa.Column("deployment_id", sa.Integer, sa.ForeignKey("fleet_deployments.id"), primary_key=True),
    sa.Column("device_id", sa.String(128), sa.ForeignKey("fleet_devices.id"), primary_key=True),
    sa.Column("wave", sa.Integer, nullable=False),
    sa.Column("release_id", sa.Integer),  # None: no variant for the device's hardware
    sa.Column("previous_id", sa.Integer),
    sa.Column("status", sa.String(16), nullable=False),  # pending|ok|failed|skipped
    sa.Column("error", sa.Text),
    sa.Column("updated_at", _WHEN, nullable=False),
    sa.Index("ix_fleet_assignments_device", "device_id", "deployment_id"),
)

TABLES = (tokens, devices, releases, deployments, assignments)
