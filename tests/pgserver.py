"""A throwaway PostgreSQL server for tests: initdb in a temp folder, a free loopback port."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

from tests.ports import PortTaken, free_port, on_free_ports, taken

__all__ = ["PostgresServer", "free_port"]


def _bindir() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return Path(found[-1]).parent
    which = shutil.which("initdb")
    if which:
        return Path(which).resolve().parent
    raise RuntimeError(
        "PostgreSQL server binaries not found; install them with: apt-get install postgresql"
    )


class PostgresServer:
    def __init__(self) -> None:
        self.bindir = _bindir()
        self.root = Path(tempfile.mkdtemp(prefix="modelport-pg-"))
        self.data = self.root / "data"
        self.port = 0  # chosen by start()
        self._user: dict[str, object] = {}
        if os.geteuid() == 0:  # initdb refuses to run as root
            import grp
            import pwd

            nobody = pwd.getpwnam("nobody")
            group = grp.getgrgid(nobody.pw_gid).gr_name
            self._user = {"user": nobody.pw_uid, "group": nobody.pw_gid}
            os.chown(self.root, nobody.pw_uid, nobody.pw_gid)
            del group

    def _run(self, *args: str) -> None:
        subprocess.run(
            [str(self.bindir / args[0]), *args[1:]],
            check=True,
            capture_output=True,
            cwd=self.root,
            **self._user,  # type: ignore[arg-type]
        )

    def start(self) -> PostgresServer:
        """initdb, then the server on a free port (another one if that port is taken first)."""
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust",
                  "--no-locale", "-E", "UTF8", "--no-sync")  # fmt: skip
        self.port = on_free_ports(self._listen)
        return self

    def _listen(self, port: int) -> int:
        options = (
            f"-p {port} -c listen_addresses=127.0.0.1 -k {self.root} "
            "-c fsync=off -c max_connections=200 -c shared_buffers=32MB"
        )
        log = self.root / f"log-{port}"
        try:
            self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", str(log),
                      "-w", "-t", "60", "start")  # fmt: skip
        except subprocess.CalledProcessError as exc:
            said = log.read_text(errors="replace") if log.exists() else ""
            said += exc.stderr.decode(errors="replace")
            if taken(said):
                raise PortTaken(said) from None
            raise AssertionError(f"PostgreSQL did not start: {said[-3000:]}") from None
        return port

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self) -> str:
        import psycopg

        name = "t_" + uuid.uuid4().hex[:12]
        with psycopg.connect(f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres",
                             autocommit=True) as conn:  # fmt: skip
            conn.execute(f'CREATE DATABASE "{name}"')
        return name

    def drop_database(self, name: str) -> None:
        import psycopg

        for _ in range(20):
            try:
                with psycopg.connect(f"host=127.0.0.1 port={self.port} user=postgres "
                                     "dbname=postgres", autocommit=True) as conn:  # fmt: skip
                    conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                return
            except psycopg.Error:
                time.sleep(0.1)

    def stop(self) -> None:
        try:
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)
