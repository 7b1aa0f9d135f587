"""Find a PostgreSQL server for the tests, or start a throwaway cluster; put pgbouncer in front.

Order: ``$CLEW_TEST_PG_URL``; the local server on 127.0.0.1:5432; a new cluster made
with ``initdb`` and started with ``pg_ctl`` on a free port (removed at exit). Under
``CI=true`` a missing server is a failure, never a skip.

:class:`Cluster` is a throwaway server of a test's own, to stop and restart;
:func:`start_pgbouncer` starts Debian's ``pgbouncer`` (installing it with apt when it
is missing and we may) on a free port in front of a server.
"""

from __future__ import annotations

import atexit
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/test"


def _answers(url: str) -> bool:
    try:
        import psycopg
    except ImportError:
        return False
    try:
        psycopg.connect(url, connect_timeout=3).close()
        return True
    except psycopg.Error:
        return False


def _binary(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return candidates[-1] if candidates else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _as_postgres() -> list[str]:
    """initdb, pg_ctl and pgbouncer refuse to run as root: run them as ``postgres`` then."""
    return ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []


def _workdir(prefix: str) -> str:
    base = tempfile.mkdtemp(prefix=prefix)
    if os.geteuid() == 0:
        shutil.chown(base, "postgres")
    return base


class Cluster:
    """A throwaway PostgreSQL cluster (``initdb`` + ``pg_ctl``) that a test may stop and restart.

    Args:
        settings: extra server settings, e.g. ``{"idle_session_timeout": "1s"}``.
    """

    def __init__(self, settings: dict[str, str] | None = None, *, standby_of: Cluster | None = None) -> None:
        initdb, pg_ctl = _binary("initdb"), _binary("pg_ctl")
        if not initdb or not pg_ctl:
            raise RuntimeError("initdb/pg_ctl are not installed (apt install postgresql)")
        self.pg_ctl = pg_ctl
        self.base = _workdir("clew-pg-")
        self.data = os.path.join(self.base, "data")
        self.port = _free_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        extra = " ".join(f"-c {k}={v}" for k, v in (settings or {}).items())
        self._opts = f"-p {self.port} -k {self.base} -c listen_addresses=127.0.0.1 -c fsync=off {extra}".strip()
        if standby_of is None:
            cmd = [initdb, "-D", self.data, "-U", "postgres", "--auth=trust", "-E", "UTF8"]
        else:  # a streaming replica: a base backup of the primary that follows its WAL (-R)
            basebackup = _binary("pg_basebackup")
            if not basebackup:
                raise RuntimeError("pg_basebackup is not installed (apt install postgresql)")
            cmd = [basebackup, "-D", self.data, "-R", "-X", "stream", "-h", "127.0.0.1", "-p", str(standby_of.port)]
            cmd += ["-U", "postgres"]
        subprocess.run([*_as_postgres(), *cmd], check=True, capture_output=True)
        self.start()
        atexit.register(self.remove)

    def standby(self) -> Cluster:
        """A streaming replica of this cluster, started on a port of its own."""
        return Cluster(standby_of=self)

    def _ctl(self, *args: str) -> None:
        log = os.path.join(self.base, "log")
        subprocess.run(
            [*_as_postgres(), self.pg_ctl, "-D", self.data, "-l", log, "-w", "-o", self._opts, *args],
            check=True,
            capture_output=True,
        )

    def start(self) -> None:
        self._ctl("start")
        if not _answers(self.url):
            raise RuntimeError(f"started a throwaway cluster in {self.base} but it does not answer")

    def stop(self, mode: str = "fast") -> None:
        self._ctl("-m", mode, "stop")

    def restart(self, mode: str = "fast") -> None:
        self._ctl("-m", mode, "restart")

    def remove(self) -> None:
        subprocess.run([*_as_postgres(), self.pg_ctl, "-D", self.data, "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(self.base, ignore_errors=True)


def _start_cluster() -> str:
    return Cluster().url


def find_pgbouncer() -> str:
    """The pgbouncer binary; installed with apt when missing and we are root. Raises RuntimeError."""
    found = shutil.which("pgbouncer") or ("/usr/sbin/pgbouncer" if os.path.exists("/usr/sbin/pgbouncer") else None)
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        done = subprocess.run(["apt-get", "install", "-y", "pgbouncer"], capture_output=True, env=env)
        if done.returncode != 0:
            subprocess.run(["apt-get", "update"], capture_output=True, env=env)
            subprocess.run(["apt-get", "install", "-y", "pgbouncer"], capture_output=True, env=env)
        if os.path.exists("/usr/sbin/pgbouncer"):
            return "/usr/sbin/pgbouncer"
    raise RuntimeError("pgbouncer is not installed and could not be installed (apt-get install pgbouncer)")


def start_pgbouncer(server_url: str, mode: str, **settings: str) -> str:
    """Start pgbouncer in ``mode`` (transaction or session) in front of ``server_url``; returns its URL."""
    binary = find_pgbouncer()
    server = urlsplit(server_url)
    base = _workdir("clew-pgbouncer-")
    port = _free_port()
    user = server.username or "postgres"
    with open(os.path.join(base, "users.txt"), "w") as f:
        f.write(f'"{user}" ""\n')
    config = {
        "listen_addr": "127.0.0.1",
        "listen_port": str(port),
        "unix_socket_dir": "",
        "auth_type": "trust",
        "auth_file": os.path.join(base, "users.txt"),
        "pool_mode": mode,
        "max_client_conn": "500",
        "default_pool_size": "20",
        "logfile": os.path.join(base, "log"),
        "pidfile": os.path.join(base, "pid"),
        **settings,
    }
    ini = os.path.join(base, "pgbouncer.ini")
    with open(ini, "w") as f:
        f.write(f"[databases]\n* = host={server.hostname or '127.0.0.1'} port={server.port or 5432}\n[pgbouncer]\n")
        f.writelines(f"{k} = {v}\n" for k, v in config.items())
    run_as: list[str] = []
    if os.geteuid() == 0:  # pgbouncer refuses to run as root; -u drops to postgres in the same process
        run_as = ["-u", "postgres"]
        for name in os.listdir(base):
            shutil.chown(os.path.join(base, name), "postgres")
    proc = subprocess.Popen([binary, *run_as, ini], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    atexit.register(lambda: (proc.kill(), proc.wait()))
    url = urlunsplit((server.scheme, f"{user}@127.0.0.1:{port}", server.path, "", ""))
    for _ in range(100):
        if _answers(url):
            return url
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    logfile = Path(base, "log")
    log = logfile.read_text() if logfile.exists() else ""
    raise RuntimeError(f"pgbouncer ({mode} mode) did not start on port {port}: {log[-2000:]}")


def find_postgres() -> str:
    """A URL of a PostgreSQL that answers. Raises RuntimeError saying why not."""
    url = os.environ.get("CLEW_TEST_PG_URL")
    if url:
        if _answers(url):
            return url
        raise RuntimeError(f"CLEW_TEST_PG_URL={url} does not answer")
    if _answers(DEFAULT_URL):
        return DEFAULT_URL
    return _start_cluster()
