"""A PostgreSQL database of a test's own: created on the server, dropped afterwards.

The server is named by $KILN_TEST_POSTGRES_URL, a URL of its maintenance database; by default
``postgresql://postgres@127.0.0.1:5432/postgres``, which .ci/run starts. No test relies on a
database someone else created: each creates ``<prefix>_<random>``, empty, and drops it.

A server that does not answer is a missing tool (a skip, a failure under CI=true); a server that
answers but refuses (a login, a role, a right) is a failure everywhere, with what it said.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import socket
import uuid
from collections.abc import Iterator
from urllib.parse import urlsplit, urlunsplit

import pytest

from tests.conftest import require_tool

SERVER_URL = os.environ.get("KILN_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def reachable(url: str) -> str | None:
    """None if something accepts TCP connections at ``url``'s host and port, else why not."""
    parts = urlsplit(url)
    address = (parts.hostname or "localhost", parts.port or 5432)
    try:
        socket.create_connection(address, timeout=5).close()
    except OSError as exc:
        return f"{address[0]}:{address[1]}: {exc}"
    return None


@contextlib.contextmanager
def fresh_database(prefix: str) -> Iterator[str]:
    """The URL (no driver named, as a user writes it) of a new, empty database on the server."""
    require_tool(importlib.util.find_spec("psycopg2") is not None,
                 "psycopg2 is not installed: pip install 'kiln-ml[sweep]'")
    why = reachable(SERVER_URL)
    require_tool(why is None, f"no PostgreSQL server reachable at {why}: start one (.ci/run does), "
                              "or point KILN_TEST_POSTGRES_URL at one")
    import psycopg2

    try:
        admin = psycopg2.connect(SERVER_URL, connect_timeout=10)
    except psycopg2.OperationalError as exc:
        pytest.fail(f"the PostgreSQL server at {SERVER_URL} answered but refused the connection: "
                    f"{str(exc).strip()}; fix its access (or KILN_TEST_POSTGRES_URL) so that this "
                    "URL can create databases", pytrace=False)
    admin.autocommit = True
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    try:
        with admin.cursor() as cursor:
            cursor.execute(f'CREATE DATABASE "{name}"')
        yield urlunsplit(urlsplit(SERVER_URL)._replace(path=f"/{name}"))
    finally:
        with admin.cursor() as cursor:
            cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')  # ends its sessions
        admin.close()
