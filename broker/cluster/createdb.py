"""``python -m broker.cluster.createdb postgresql://user@host/name``: create the database of the URL if
it does not exist (``scripts/cluster up``); the brokers migrate it at start. Connects to the server's
``postgres`` database to do it. The name must be a plain identifier (``[A-Za-z_][A-Za-z0-9_]{0,62}``):
it goes into ``CREATE DATABASE``, which takes no parameters."""

from __future__ import annotations

import re
import sys
from collections.abc import Sequence
from urllib.parse import urlsplit, urlunsplit

__all__ = ["create_database", "main"]

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}\Z")


def create_database(url: str) -> bool:
    """True when the database was created, False when it existed."""
    import psycopg

    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    if parts.scheme not in ("postgresql", "postgres") or not _NAME.match(name):
        raise ValueError("expected postgresql://user@host[:port]/name with a plain database name")
    admin_url = urlunsplit((parts.scheme, parts.netloc, "/postgres", parts.query, ""))
    with psycopg.connect(admin_url, autocommit=True, connect_timeout=5) as admin:
        if admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            return False
        admin.execute(f'CREATE DATABASE "{name}"')
    return True


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        print("usage: python -m broker.cluster.createdb postgresql://user@host[:port]/name", file=sys.stderr)
        return 2
    try:
        created = create_database(args[0])
    except Exception as exc:  # no server, bad URL: one line, no URL (it may carry a password)
        print(f"error: cannot create the database ({type(exc).__name__}: {exc})", file=sys.stderr)
        return 2
    print("database created" if created else "database exists")
    return 0


if __name__ == "__main__":
    sys.exit(main())
