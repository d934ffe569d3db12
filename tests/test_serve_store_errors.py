"""`mm7 serve` with a store it cannot open: a real process exits 2 with one line on stderr that
names the database (``postgresql://host:port/database`` or the file, never a password), and no
traceback. PostgreSQL: a server that does not answer, a role it refuses, a schema newer than this
mm7, a DSN the driver cannot read; SQLite: a file that is not a database."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.runtime import clean_env, write_config
from tests.helpers.stores import dsn_of, pg_database, pg_unavailable

PASSWORD = "pa55-n0t-shown"


def serve_once(config: Path, cwd: Path, dsn: str | None = None) -> subprocess.CompletedProcess[str]:
    env = clean_env()
    if dsn is not None:
        env["MM7_TEST_DSN"] = dsn
    return subprocess.run(
        [sys.executable, "-m", "mm7.cli.main", "serve", "--config", str(config)],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def postgresql_config(tmp_path: Path) -> Path:
    """The test gateway's config with its store on PostgreSQL, the DSN from MM7_TEST_DSN."""
    path = write_config(tmp_path, 9)
    path.write_text(
        path.read_text().replace(
            '[store]\npath = "', '[store]\nbackend = "postgresql"\ndsn_env = "MM7_TEST_DSN"\n#'
        )
    )
    return path


def assert_one_line(done: subprocess.CompletedProcess[str], *expected: str) -> None:
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert done.stderr.count("\n") == 1, done.stderr
    assert "Traceback" not in done.stderr and PASSWORD not in done.stderr + done.stdout
    assert done.stderr.startswith("mm7 serve: cannot start: "), done.stderr
    for text in expected:
        assert text in done.stderr, done.stderr


def with_password(dsn: str, user: str = "postgres") -> str:
    """``dsn`` with a user and a password (trust authentication ignores the password)."""
    return dsn.replace("postgresql://postgres@", f"postgresql://{user}:{PASSWORD}@")


def test_an_unreachable_server_is_named(tmp_path: Path) -> None:
    done = serve_once(postgresql_config(tmp_path), tmp_path,
                      f"postgresql://mm7:{PASSWORD}@127.0.0.1:1/gw")  # fmt: skip
    assert_one_line(done, "postgresql://127.0.0.1:1/gw: cannot connect")


def test_a_dsn_the_driver_cannot_read_is_named_and_not_shown(tmp_path: Path) -> None:
    # the password in the port's place: the driver's own words would quote it
    done = serve_once(postgresql_config(tmp_path), tmp_path,
                      f"postgresql://mm7@127.0.0.1:{PASSWORD}/gw")  # fmt: skip
    assert_one_line(done, "the DSN is not a URL the driver can read")


async def test_a_refused_role_and_a_newer_schema_are_named(tmp_path: Path) -> None:
    why = await pg_unavailable()
    if why is not None:
        pytest.skip(why)
    import asyncpg

    async with pg_database() as dsn:
        database = dsn.rsplit("/", 1)[1]
        refused = serve_once(postgresql_config(tmp_path), tmp_path,
                             with_password(dsn, "no_such_role_mm7"))  # fmt: skip
        assert_one_line(refused, f"postgresql://127.0.0.1:5432/{database}: cannot connect",
                        'role "no_such_role_mm7" does not exist')  # fmt: skip
        conn = await asyncpg.connect(dsn_of(database))
        try:
            await conn.execute(
                "CREATE TABLE schema_version (version INTEGER PRIMARY KEY,"
                " description TEXT NOT NULL, applied_at BIGINT NOT NULL);"
                " INSERT INTO schema_version VALUES (99, 'from the future', 0)"
            )
        finally:
            await conn.close()
        newer = serve_once(postgresql_config(tmp_path), tmp_path, with_password(dsn))
        assert_one_line(newer, f"postgresql://127.0.0.1:5432/{database}: schema version 99 is")


def test_an_sqlite_file_that_is_not_a_database_is_named(tmp_path: Path) -> None:
    config = write_config(tmp_path, 9)
    db = tmp_path / "var" / "mm7.sqlite"
    db.parent.mkdir()
    db.write_bytes(b"not a database " * 100)
    done = serve_once(config, tmp_path)
    assert_one_line(done, f"{db.as_posix()}: cannot open the database: file is not a database")
