"""A device behind a lossy, slow link that resets its connections: a ~50 MB release, then an
update of the last layer only. Needs root (a network namespace and a veth pair).

    sudo .venv/bin/python benchmarks/lossy_link.py [--width 2048] [--reset-every 30]

The device is ``modelport edge agent`` inside its own network namespace; the fleet server runs
on the host behind a relay. The link: 10% of the packets lost each way (``tc netem`` where the
kernel has it, else iptables' random drops with one segment per packet), 200 ms round trips
(netem, else the relay holds data 100 ms each way), and every connection reset after
``--reset-every`` seconds. Prints the bytes relayed to the device and the bytes of frames its
interface received, against the release size, for the full release and for the update.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402
from tests.edge.netns import iptables_loss_available, netem_available  # noqa: E402
from tests.edge.test_lossy_links import run_link  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=2048, help="hidden width (2048: ~50 MB)")
    parser.add_argument("--layers", type=int, default=3, help="hidden layers of that width")
    parser.add_argument("--reset-every", type=float, default=30.0)
    args = parser.parse_args()
    console = Console()
    if netem_available() is None:
        shaping, how = {"netem": ("delay", "100ms", "loss", "10%")}, "tc netem"
    elif (reason := iptables_loss_available()) is None:
        shaping, how = {"netem": (), "loss": 0.10, "delay": 0.1}, "iptables drops + relay delay"
    else:
        raise SystemExit(f"cannot shape a link here: {reason}")
    from modelport.edge.keys import KeyStore

    with tempfile.TemporaryDirectory(prefix="lossy-link-") as tmp:
        store = KeyStore(Path(tmp) / "keys")
        store.generate()
        widths = [4, *[args.width] * (args.layers + 1), 3]
        started = time.monotonic()
        releases, full, delta = run_link(store, Path(tmp), widths,
                                         reset_every=args.reset_every, **shaping)  # fmt: skip
        seconds = time.monotonic() - started
    size = releases[0]["size"]
    relayed, frames, resets = full
    table = Table(title=f"{size / 1e6:.1f} MB release, 10% loss each way, 200 ms round trip "
                        f"({how}), reset every {args.reset_every:g} s")  # fmt: skip
    for column in ("transfer", "resets", "relayed", "x release", "frames at device", "x release"):
        table.add_column(column, justify="right")
    table.add_row("full release", str(resets), f"{relayed:,}", f"{relayed / size:.3f}",
                  f"{frames:,}", f"{frames / size:.3f}")  # fmt: skip
    table.add_row("last-layer update", "-", f"{delta[0]:,}", f"{delta[0] / size:.4f}",
                  f"{delta[1]:,}", f"{delta[1] / size:.4f}")  # fmt: skip
    console.print(table)
    console.print(f"both installs, enrolment and checks included: {seconds:.0f} s")


if __name__ == "__main__":
    main()
