"""The PostgreSQL store's own: its schema's versions, races between two nodes, a lost server.

Every operation's behaviour is tested on both backends (test_store.py and
the others that take ``store``); here is what only PostgreSQL has. On the
session's real server (tests/postgres.py).
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from typing import Any

import pytest

from wolfpacs.state import pgschema
from wolfpacs.state.postgresql import DriverMissingError, PostgreSQLStore, dialect
from wolfpacs.state.schema import SchemaError
from wolfpacs.state.store import WORKER, QueueItem


def psycopg() -> Any:
    import psycopg

    return psycopg


def opened(url: str, **options: Any) -> PostgreSQLStore:
    store = PostgreSQLStore(url, durable=False, **options)
    store.open()
    return store


def together(count: int, work: Callable[[int], Any]) -> list[Any]:
    """``work(n)`` for n in range(count), each in its own thread, released at once."""
    start, answers, errors = threading.Barrier(count), [None] * count, []

    def run(n: int) -> None:
        try:
            start.wait(10)
            answers[n] = work(n)
        except BaseException as exc:  # the test's thread reports it
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors
    return answers


def test_a_new_database_records_its_schema_version(postgres_url):
    opened(postgres_url).close()
    with psycopg().connect(postgres_url) as db:
        assert db.execute("SELECT version FROM schema_version").fetchall() == [(pgschema.VERSION,)]


def test_a_database_of_a_newer_wolfpacs_is_refused_and_left_alone(postgres_url):
    with psycopg().connect(postgres_url) as db:
        db.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
        db.execute("INSERT INTO schema_version VALUES (%s)", (pgschema.VERSION + 1,))
    with pytest.raises(SchemaError, match=r"newer than this WolfPACS knows"):
        PostgreSQLStore(postgres_url).open()
    with psycopg().connect(postgres_url) as db:
        tables = db.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
        ).fetchall()
        assert tables == [("schema_version",)]  # nothing created


def test_nodes_starting_together_migrate_once(postgres_url):
    stores = together(4, lambda _: opened(postgres_url))
    try:
        with psycopg().connect(postgres_url) as db:
            assert db.execute("SELECT version FROM schema_version").fetchall() == [
                (pgschema.VERSION,)
            ]
    finally:
        for store in stores:
            store.close()


def test_two_nodes_racing_on_new_studies_get_the_same_routes(postgres_url):
    """Each node (a store with its own pool) asks for every route at the same instant, each
    naming its own worker: insert-if-absent gives both the one that stands."""
    nodes = [opened(postgres_url), opened(postgres_url)]
    studies = [f"1.2.{n}" for n in range(60)]

    def route_all(n: int) -> list[tuple[str, str]]:
        routes = [nodes[n].insert_route("c", uid, f"gpu-{n}", 10.0 + n, "lung") for uid in studies]
        decisions = [
            nodes[n].decide_series("c", uid, "9.1", {"pool": "lung", "action": f"node-{n}"})
            for uid in studies
        ]
        return [(r.worker, d["action"]) for r, d in zip(routes, decisions, strict=True)]

    try:
        first, second = together(2, route_all)
        assert first == second
        assert nodes[0].count_studies() == len(studies)
        # one assignment per study: the loser's worker was never given it
        assert all(len(nodes[0].routes_of(uid)) == 1 for uid in studies)
        assert all(
            nodes[0].owners(uid, worker) == ["c"]
            for uid, (worker, _) in zip(studies, first, strict=True)
        )
    finally:
        for node in nodes:
            node.close()


def test_an_instance_enqueued_by_two_nodes_at_once_is_counted_once(postgres_url):
    from tests.test_store import item

    nodes = [opened(postgres_url), opened(postgres_url)]
    try:
        nodes[0].insert_route("c", "1.2.1", "gpu-a", 10.0)
        ids = together(2, lambda n: nodes[n].enqueue(item("spool/gpu-a/x.dcm")))
        assert ids[0] == ids[1]
        assert nodes[1].study("1.2.1")[0]["instances_in"] == 1
    finally:
        for node in nodes:
            node.close()


def test_connections_the_server_ended_break_the_store_and_a_reopened_one_serves(
    postgres, postgres_url
):
    store = opened(postgres_url)
    try:
        store.insert_route("c", "1.2.1", "gpu-a", 10.0)
        name = postgres_url.rsplit("/", 1)[1]
        postgres.admin(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            f"WHERE datname = '{name}' AND pid <> pg_backend_pid()"
        )
        with pytest.raises(psycopg().OperationalError) as raised:
            store.get_route("c", "1.2.1")
        assert store.is_broken(raised.value)  # the store actor crashes and reopens: as here
        store.close()
        store.open()
        assert store.get_route("c", "1.2.1").worker == "gpu-a"
    finally:
        store.close()


def test_a_server_out_of_reach_is_a_broken_store(postgres):
    url = postgres.url("wolfpacs").replace(f":{postgres.port}/", ":1/")  # nobody listens there
    store = PostgreSQLStore(url.replace("wolfpacs@", "wolfpacs:s3cret@"), timeout=1.0)
    with pytest.raises(psycopg().OperationalError) as raised:
        store.open()
    assert store.is_broken(raised.value)
    assert "s3cret" not in f"{raised.value} {raised.value.__cause__} {raised.value.__context__}"
    assert not store.is_broken(psycopg().errors.UndefinedTable("a caller's bad query"))


def test_a_batch_is_delivered_and_the_next_one_read_in_one_statement(postgres_url, monkeypatch):
    """The store's one thread sends a statement per round trip to the server: the portable
    delivery of a batch (BEGIN, a DELETE and an UPDATE per row, COMMIT, the next SELECT)
    took 3 + 2 x rows; PostgreSQL's (wolfpacs.state.pgqueue) takes one."""
    store = opened(postgres_url, node_id="node-a")
    try:
        store.insert_route("c", "1.2.1", "gpu-a", 10.0)
        ids = [store.enqueue(QueueItem("gpu-a", WORKER, f"spool/{n}.dcm", "c", "1.2.1", "1.2",
                                       "9.9", "1.2.840.10008.1.2.1", 10, 1000.0))
               for n in range(4)]  # fmt: skip
        sent: list[str] = []
        connection = psycopg().Connection
        execute, transaction = connection.execute, connection.transaction

        def counted_execute(db: Any, query: Any, *args: Any, **kwargs: Any) -> Any:
            sent.append(str(query))
            return execute(db, query, *args, **kwargs)

        def counted_transaction(db: Any, *args: Any, **kwargs: Any) -> Any:
            sent.append("BEGIN")  # and its COMMIT
            return transaction(db, *args, **kwargs)

        monkeypatch.setattr(connection, "execute", counted_execute)
        monkeypatch.setattr(connection, "transaction", counted_transaction)
        gone, following = store.delivered_next(ids[:3], "gpu-a")
        assert gone == ids[:3] and [i.id for i in following] == ids[3:]
        assert len(sent) == 1, sent
        sent.clear()
        assert store.delivered(ids[3]) and not store.delivered(ids[3])
        assert len(sent) == 2, sent
    finally:
        store.close()


def test_the_password_of_its_url_is_never_shown(postgres):
    url = postgres.url("wolfpacs_template").replace("wolfpacs@", "wolfpacs:s3cret@")
    store = opened(url)  # the test server trusts loopback: any password does
    try:
        described = store.describe()
        assert "s3cret" not in str(described) and "s3cret" not in store.where
        assert described["url"].startswith("postgresql://wolfpacs:\u2026@127.0.0.1:")
        assert described["psycopg"] == psycopg().pq.__impl__  # which implementation runs
    finally:
        store.close()


def test_without_psycopg_it_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "psycopg", None)  # as if the extra was not installed
    with pytest.raises(DriverMissingError, match=r"pip install 'wolfpacs\[postgresql\]'"):
        PostgreSQLStore("postgresql://localhost/wolfpacs").open()


def test_the_operations_sql_is_turned_into_psycopgs():
    assert dialect("SELECT ? WHERE a LIKE '10%'") == "SELECT %s WHERE a LIKE '10%%'"


def test_both_backends_have_the_same_tables_columns_indexes_and_triggers(tmp_path, postgres_url):
    """The schemas are written twice, once per dialect: they must not drift apart."""
    import sqlite3

    from wolfpacs.state.sqlite import SQLiteStore

    SQLiteStore(tmp_path / "state.sqlite3").open()
    with sqlite3.connect(tmp_path / "state.sqlite3") as db:
        tables = [
            row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        ]
        lite = {t: sorted(r[1] for r in db.execute(f"PRAGMA table_info({t})")) for t in tables}
        lite_indexes = {r[0] for r in db.execute(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL")}  # fmt: skip
        lite_triggers = {r[0] for r in db.execute(
            "SELECT name FROM sqlite_master WHERE type = 'trigger'")}  # fmt: skip
    opened(postgres_url).close()
    with psycopg().connect(postgres_url) as db:
        columns = db.execute(
            "SELECT table_name, column_name FROM information_schema.columns "
            "WHERE table_schema = 'public' AND table_name <> 'schema_version'"
        ).fetchall()
        pg: dict[str, list[str]] = {}
        for table, column in columns:
            pg.setdefault(table, []).append(column)
        pg_indexes = {r[0] for r in db.execute(
            "SELECT indexname FROM pg_indexes WHERE schemaname = 'public' "
            "AND indexname NOT LIKE '%%_pkey' AND indexname NOT LIKE '%%_key'")}  # fmt: skip
        pg_triggers = {r[0] for r in db.execute(
            "SELECT tgname FROM pg_trigger WHERE NOT tgisinternal")}  # fmt: skip
    assert {t: sorted(c) for t, c in pg.items()} == lite
    assert pg_indexes == lite_indexes
    assert pg_triggers == lite_triggers


def test_only_synced_transactions_of_a_durable_store_wait_for_the_wal_flush(postgres_url):
    store = PostgreSQLStore(postgres_url, durable=True)
    store.open()
    try:
        with store._transaction() as db:  # a route, a move, a worker's state
            assert db.execute("SHOW synchronous_commit").fetchone() == ("on",)  # the server's
        with store._transaction(synced=False) as db:  # what the spool rebuilds
            assert db.execute("SHOW synchronous_commit").fetchone() == ("off",)
        assert store._rows("SHOW synchronous_commit") == [("off",)]  # a queue row's statement
    finally:
        store.close()
    store = opened(postgres_url)  # durable=False: nothing waits
    try:
        with store._transaction() as db:
            assert db.execute("SHOW synchronous_commit").fetchone() == ("off",)
    finally:
        store.close()


def test_no_statement_holds_the_store_for_ever(postgres_url):
    from wolfpacs.state.postgresql import STATEMENT_TIMEOUT

    store = opened(postgres_url)
    try:
        assert store._rows("SHOW statement_timeout") == [(STATEMENT_TIMEOUT,)]
        with pytest.raises(psycopg().OperationalError) as raised, store._transaction() as db:
            db.execute("SET LOCAL statement_timeout TO '50ms'")
            db.execute("SELECT pg_sleep(5)")
        assert store.is_broken(raised.value)  # QueryCanceled: the store actor reopens
    finally:
        store.close()
