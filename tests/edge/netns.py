"""A simulated device on its own network: a namespace joined to the host by a veth pair,
optionally shaped with ``tc netem`` or, where the kernel has no netem, losing packets through
iptables' ``statistic`` match; and a relay that delays data and resets every connection on a
timer."""

from __future__ import annotations

import os
import queue
import shutil
import socket
import struct
import subprocess
import threading
import time
from contextlib import contextmanager

HOST_IP, DEVICE_IP = "10.77.0.1", "10.77.0.2"


def sh(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, check=check)


def netem_available() -> str | None:
    """None when ``tc netem`` works here, else why not."""
    if os.geteuid() != 0:
        return "network namespaces and tc need root"
    made = sh(
        "ip", "link", "add", "mpe-probe0", "type", "veth", "peer", "name", "mpe-probe1", check=False
    )
    if made.returncode != 0:
        return f"cannot make a veth pair: {made.stderr.strip()}"
    try:
        done = sh(
            "tc", "qdisc", "add", "dev", "mpe-probe0", "root", "netem", "delay", "1ms", check=False
        )
        return (
            None
            if done.returncode == 0
            else (f"this kernel has no tc netem (sch_netem): {done.stderr.strip()}")
        )
    finally:
        sh("ip", "link", "del", "mpe-probe0", check=False)


def iptables_loss_available() -> str | None:
    """None when packets can be dropped at random with iptables here, else why not."""
    if os.geteuid() != 0:
        return "network namespaces and iptables need root"
    if shutil.which("iptables-legacy") is None:
        return "no iptables-legacy (Debian's iptables package)"
    probe = "mpe-probe"
    sh("ip", "netns", "add", probe, check=False)
    try:
        done = sh("ip", "netns", "exec", probe, "iptables-legacy", "-A", "OUTPUT", "-m",
                  "statistic", "--mode", "random", "--probability", "0.1", "-j", "DROP",
                  check=False)  # fmt: skip
        return None if done.returncode == 0 else f"iptables cannot drop at random: {done.stderr}"
    finally:
        sh("ip", "netns", "del", probe, check=False)


def _loss_rule(interface: str, loss: float) -> tuple[str, ...]:
    return ("OUTPUT", "-o", interface, "-m", "statistic", "--mode", "random", "--probability",
            f"{loss:.4f}", "-j", "DROP")  # fmt: skip


@contextmanager
def device_namespace(name: str = "mpe-dev", netem: tuple[str, ...] = (), loss: float = 0.0):
    """Yields the namespace name; ``netem`` options shape both directions (e.g. delay 100ms);
    ``loss``: the fraction of packets each side drops as it sends them (iptables), so a lost
    packet never reaches the other side's interface, as with netem."""
    sh("ip", "netns", "del", name, check=False)
    sh("ip", "link", "del", "mpe-h", check=False)
    sh("ip", "netns", "add", name)
    try:
        sh("ip", "link", "add", "mpe-h", "type", "veth", "peer", "name", "mpe-d")
        sh("ip", "link", "set", "mpe-d", "netns", name)
        sh("ip", "addr", "add", f"{HOST_IP}/24", "dev", "mpe-h")
        sh("ip", "link", "set", "mpe-h", "up")
        inside = ("ip", "netns", "exec", name)
        sh(*inside, "ip", "addr", "add", f"{DEVICE_IP}/24", "dev", "mpe-d")
        sh(*inside, "ip", "link", "set", "mpe-d", "up")
        sh(*inside, "ip", "link", "set", "lo", "up")
        if netem:
            sh("tc", "qdisc", "add", "dev", "mpe-h", "root", "netem", *netem)
            sh(*inside, "tc", "qdisc", "add", "dev", "mpe-d", "root", "netem", *netem)
        if loss:  # one packet per segment on the wire (no 64 KB offload batches), then drops
            sh("ip", "link", "set", "mpe-h", "gso_max_segs", "1")
            sh(*inside, "ip", "link", "set", "mpe-d", "gso_max_segs", "1")
            sh("iptables-legacy", "-A", *_loss_rule("mpe-h", loss))
            sh(*inside, "iptables-legacy", "-A", *_loss_rule("mpe-d", loss))
        yield name
    finally:
        if loss:  # the host's rule outlives the interface it names: remove it
            sh("iptables-legacy", "-D", *_loss_rule("mpe-h", loss), check=False)
        sh("ip", "netns", "del", name, check=False)
        sh("ip", "link", "del", "mpe-h", check=False)


def rx_bytes(namespace: str) -> int:
    """Bytes the device's interface received (frames as delivered, headers included)."""
    out = sh("ip", "netns", "exec", namespace, "cat", "/sys/class/net/mpe-d/statistics/rx_bytes")
    return int(out.stdout)


class ResettingRelay:
    """Listens on ``listen``, relays to ``target`` and resets (RST) every open connection each
    ``every`` seconds (the link drops on a timer) and any past ``after_bytes`` towards the
    device; counts those bytes.
    ``delay``: seconds each piece of data waits before it is passed on, either way (0.1: a
    200 ms round trip for requests and replies)."""

    def __init__(
        self,
        listen: tuple[str, int],
        target: tuple[str, int],
        every: float,
        after_bytes: int = 1 << 62,
        delay: float = 0.0,
    ) -> None:
        self.target, self.every, self.after_bytes = target, every, after_bytes
        self.started = time.monotonic()
        self.delay = delay
        self.sock = socket.create_server(listen)
        self.port = self.sock.getsockname()[1]
        self.to_device = 0
        self.resets = 0
        self._lock = threading.Lock()
        self._stop = False
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        self._stop = True
        self.sock.close()

    def _accept(self) -> None:
        while not self._stop:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            ticks = (time.monotonic() - self.started) // self.every + 1
            until = self.started + ticks * self.every  # when the link next drops
            threading.Thread(
                target=self._pipe, args=(client, upstream, False, until), daemon=True
            ).start()
            threading.Thread(
                target=self._pipe, args=(upstream, client, True, until), daemon=True
            ).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, down: bool, until: float) -> None:
        src.settimeout(0.05)
        sent = 0
        out = _Delayed(dst, self.delay, self._count if down else None)
        try:
            while time.monotonic() < until and sent < self.after_bytes:
                try:
                    data = src.recv(16384)
                except TimeoutError:
                    continue
                if not data:
                    break
                if down:
                    data = data[: self.after_bytes - sent]
                    sent += len(data)
                out.put(data)
            else:
                out.finish()  # what is on its way arrives before the reset does
                with self._lock:
                    self.resets += down
                for s in (src, dst):  # abortive close: the peer sees a connection reset
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                 struct.pack("ii", 1, 0))  # fmt: skip
        except OSError:
            pass
        finally:
            out.finish()
            for s in (src, dst):
                try:
                    s.close()
                except OSError:
                    pass

    def _count(self, n: int) -> None:
        with self._lock:
            self.to_device += n


class _Delayed:
    """Passes data on to ``sock`` ``delay`` seconds after it was put, in order; ``sent(n)`` is
    told of every byte that went out."""

    def __init__(self, sock: socket.socket, delay: float, sent=None) -> None:
        self.sock, self.delay, self.sent = sock, delay, sent
        self.queue: queue.SimpleQueue = queue.SimpleQueue()
        self.dropping = False
        self.thread = threading.Thread(target=self._send, daemon=True)
        self.thread.start()

    def put(self, data: bytes) -> None:
        self.queue.put((time.monotonic() + self.delay, data))

    def finish(self) -> None:
        """Send what is queued, then stop (again: nothing more)."""
        if self.thread.is_alive():
            self.queue.put((0.0, None))
            self.thread.join(timeout=30)

    def _send(self) -> None:
        while True:
            due, data = self.queue.get()
            if data is None:
                return
            if self.dropping:
                continue
            time.sleep(max(0.0, due - time.monotonic()))
            try:
                self.sock.sendall(data)
            except OSError:
                self.dropping = True
                continue
            if self.sent is not None:
                self.sent(len(data))
