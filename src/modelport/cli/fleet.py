"""Fleet commands: serve, token, release, devices, deploy, status, halt, resume, rollback; and
``edge agent`` for the device side."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from modelport.cli import common
from modelport.cli.common import console, human_size, print_json, registry, when
from modelport.cli.edge import JsonFlag, KeysDir, _fleet, _golden, _store, edge_app, fleet_app


@fleet_app.command("serve")
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="HTTP port.")] = 8470,
    interval: Annotated[float, typer.Option(help="Seconds between device polls.")] = 15.0,
    keys: KeysDir = None,
) -> None:
    """Serve devices: enrollment, polls, reports and release files."""
    from modelport.edge.fleet.server import run

    store = _store(keys)
    root = store.root_bytes(1) if store.root_versions() else None
    console.print(f"fleet server on http://{host}:{port} (devices poll every {interval:g}s)")
    run(registry(), host=host, port=port, interval=interval, root=root)


@fleet_app.command("token")
def token(label: Annotated[str, typer.Argument(help="What the token is for.")] = "devices") -> None:
    """Print a new enrollment token."""
    typer.echo(_fleet().create_token(label))


@fleet_app.command("release")
def release(bundle: Annotated[Path, typer.Argument(help="A bundle file.")]) -> None:
    """Add a bundle to the fleet's releases (devices verify it themselves)."""
    added = _fleet().add_release(bundle)
    console.print(
        f"release {added['id']}: {added['model']} {added['format']} "
        f"{added['precision']}  {human_size(added['size'])}"
    )


@fleet_app.command("devices")
def devices(json_out: JsonFlag = False) -> None:
    """Enrolled devices and what they run."""
    rows = _fleet().devices()
    if json_out:
        print_json(rows)
        return
    table = Table(
        "device",
        "hardware",
        "tags",
        "runtimes",
        "current",
        "staged",
        "health",
        "last seen",
        "last error",
    )
    for d in rows:
        table.add_row(
            d["id"] + (" (revoked)" if d["revoked"] else ""),
            d["hardware"],
            ",".join(d["tags"]),
            ",".join(d["runtimes"]),
            str(d["current"] or "-"),
            str(d["staged"] or "-"),
            d["health"],
            when(d["last_seen"]) if d["last_seen"] else "-",
            (d["last_error"] or "")[:60],
        )
    console.print(table)


def _variant(fleet, ref: str, spec: str, keys: Path | None, golden: Path | None) -> int:
    """``arm=tflite-int8``: bundle ``ref`` that way and add it; ``x86=@7``: release 7."""
    from modelport.edge.bundle import pack_ref
    from modelport.errors import InvalidInput

    hardware, sep, what = spec.partition("=")
    if not sep or not hardware or not what:
        raise InvalidInput(f"variant {spec!r} is not HARDWARE=FORMAT[-PRECISION] or HARDWARE=@ID")
    if what.startswith("@"):
        return fleet.release(int(what[1:]) if what[1:].isdigit() else -1)["id"]
    target, _, precision = what.partition("-")
    out = (
        common.state.settings.home
        / "fleet"
        / "bundles"
        / f"{ref.replace('@', '-')}-{hardware}.bundle"
    )
    info = pack_ref(
        registry(),
        ref,
        target,
        store=_store(keys),
        output=out,
        precision=precision or "fp32",
        golden=_golden(golden),
        hardware=[hardware],
    )
    added = fleet.add_release(info.path)
    console.print(
        f"  {hardware}: {info.manifest['model']} {target} {precision or 'fp32'} -> "
        f"release {added['id']} ({human_size(added['size'])})"
    )
    return added["id"]


@fleet_app.command("deploy")
def deploy(
    ref: Annotated[str, typer.Argument(help="The version to roll out, e.g. digits@production.")],
    group: Annotated[list[str], typer.Option(help="Device tag/group, repeatable.")],
    variant: Annotated[
        list[str],
        typer.Option(help="HARDWARE=FORMAT[-PRECISION] or HARDWARE=@RELEASE, repeatable."),
    ],
    waves: Annotated[str, typer.Option(help="Cumulative percents.")] = "10,50,100",
    wait: Annotated[float, typer.Option(help="Seconds a wave runs before the next.")] = 60.0,
    threshold: Annotated[
        float, typer.Option(help="Halt when a wave's failure rate passes this.")
    ] = 0.2,
    golden: Annotated[Path | None, typer.Option(help=".npz golden/calibration inputs.")] = None,
    keys: KeysDir = None,
) -> None:
    """Bundle one variant per hardware class and roll it out in staged waves."""
    from modelport.edge.fleet.waves import parse_waves

    percents = parse_waves(waves)
    fleet = _fleet()
    variants = {v.partition("=")[0]: _variant(fleet, ref, v, keys, golden) for v in variant}
    deployment = fleet.deploy(ref, group, percents, wait, variants, threshold)
    console.print(
        f"deployment {deployment}: {ref} to {', '.join(group)} in waves {waves} "
        f"({wait:g}s each, halt above {threshold:.0%} failures)"
    )


@fleet_app.command("status")
def status(
    deployment: Annotated[
        int | None, typer.Argument(help="Deployment id (default newest).")
    ] = None,
    json_out: JsonFlag = False,
) -> None:
    """A deployment per wave and per device."""
    from modelport.edge.fleet.control import status as get_status

    info = get_status(_fleet(), deployment)
    if json_out:
        print_json(info)
        return
    console.print(
        f"deployment {info['id']}: {info['model']}  [bold]{info['state']}[/]"
        + (f"  ({info['reason']})" if info["reason"] else "")
    )
    waves = Table("wave", "percent", "devices", "ok", "failed", "pending", "progress")
    for i, w in enumerate(info["waves"]):
        done = (w["ok"] + w["failed"]) / w["size"] if w["size"] else 1.0
        bar = "#" * round(done * 10) + "." * (10 - round(done * 10))
        waves.add_row(
            str(i + 1) + (" <" if i == info["wave"] else ""),
            f"{w['percent']:g}%",
            str(w["size"]),
            str(w["ok"]),
            str(w["failed"]),
            str(w["pending"]),
            f"{bar} {done:.0%}" if w["started"] else "not started",
        )
    console.print(waves)
    table = Table("device", "wave", "hardware", "release", "status", "current", "error")
    for d in info["devices"]:
        table.add_row(
            d["device_id"],
            str(d["wave"] + 1),
            d["hardware"],
            str(d["release_id"] or "-"),
            d["status"],
            str(d["current"] or "-"),
            (d["error"] or "")[:60],
        )
    console.print(table)


def _command(action: str, deployment: int) -> None:
    from modelport.edge.fleet.control import command

    console.print(f"deployment {deployment}: {command(_fleet(), deployment, action)}")


@fleet_app.command("halt")
def halt(deployment: Annotated[int, typer.Argument(help="Deployment id.")]) -> None:
    """Stop a deployment: no device that has not started starts."""
    _command("halt", deployment)


@fleet_app.command("resume")
def resume(deployment: Annotated[int, typer.Argument(help="Deployment id.")]) -> None:
    """Continue a halted deployment; failed devices of its wave retry."""
    _command("resume", deployment)


@fleet_app.command("rollback")
def rollback(deployment: Annotated[int, typer.Argument(help="Deployment id.")]) -> None:
    """Send every device of a deployment back to the release it ran before."""
    _command("rollback", deployment)


@edge_app.command("agent")
def agent(
    server: Annotated[str, typer.Option(help="Fleet server URL.")],
    device_id: Annotated[str, typer.Option(help="This device's id.")],
    data_dir: Annotated[Path, typer.Option(help="Slots, trust and state live here.")],
    enroll_token: Annotated[str, typer.Option(help="Enrollment token (first start).")] = "",
    hardware: Annotated[str, typer.Option(help="Hardware class, e.g. arm or x86.")] = "x86",
    tag: Annotated[list[str] | None, typer.Option(help="Group/tag, repeatable.")] = None,
    root: Annotated[Path | None, typer.Option(help="Trusted TUF root.json.")] = None,
    host: Annotated[str, typer.Option(help="Local endpoint interface.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Local V2 endpoint port.")] = 8480,
    max_memory_mb: Annotated[float, typer.Option(help="Memory budget of a model.")] = 1024.0,
    max_latency_ms: Annotated[float, typer.Option(help="Latency budget of one request.")] = 1000.0,
    max_download_mb: Annotated[float, typer.Option(help="Largest release accepted.")] = 2048.0,
) -> None:
    """Keep this device on its verified, working model; serve it on a local V2 endpoint."""
    from modelport.edge.agent.agent import AgentConfig
    from modelport.edge.agent.run import run
    from modelport.edge.fleet.devices import device_id as check_id

    config = AgentConfig(
        server=server,
        device_id=check_id(device_id),
        data_dir=data_dir,
        hardware=hardware,
        enroll_token=enroll_token,
        root=root,
        tags=tuple(tag or ()),
        max_memory_mb=max_memory_mb,
        max_latency_ms=max_latency_ms,
        max_download_mb=max_download_mb,
    )
    run(config, host=host, port=port)
