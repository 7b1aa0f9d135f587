"""Find a PostgreSQL server for the tests, or start a throwaway cluster.

Order: ``$CLEW_TEST_PG_URL``; the local server on 127.0.0.1:5432; a new cluster made
with ``initdb`` and started with ``pg_ctl`` on a free port (removed at exit). Under
``CI=true`` a missing server is a failure, never a skip.
"""

from __future__ import annotations

import atexit
import glob
import os
import shutil
import socket
import subprocess
import tempfile

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


def _start_cluster() -> str:
    initdb, pg_ctl = _binary("initdb"), _binary("pg_ctl")
    if not initdb or not pg_ctl:
        raise RuntimeError("no PostgreSQL answers and initdb/pg_ctl are not installed (apt install postgresql)")
    base = tempfile.mkdtemp(prefix="clew-pg-")
    data = os.path.join(base, "data")
    port = _free_port()
    prefix: list[str] = []
    if os.geteuid() == 0:  # initdb refuses to run as root
        prefix = ["runuser", "-u", "postgres", "--"]
        shutil.chown(base, "postgres")
    subprocess.run(
        [*prefix, initdb, "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8"], check=True, capture_output=True
    )
    subprocess.run(
        [
            *prefix,
            pg_ctl,
            "-D",
            data,
            "-l",
            os.path.join(base, "log"),
            "-w",
            "-o",
            f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c fsync=off",
            "start",
        ],
        check=True,
        capture_output=True,
    )
    atexit.register(
        lambda: subprocess.run([*prefix, pg_ctl, "-D", data, "-m", "immediate", "stop"], capture_output=True)
    )
    url = f"postgresql://postgres@127.0.0.1:{port}/postgres"
    if not _answers(url):
        raise RuntimeError(f"started a throwaway cluster in {base} but it does not answer")
    return url


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
