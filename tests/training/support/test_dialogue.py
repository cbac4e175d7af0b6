from __future__ import annotations

import sqlite3
import uuid

import pytest

from training.support.dialogue import (
    InMemoryStore,
    RedisStore,
    SQLiteStore,
    extract_slots,
    make_store,
    only_slots,
    redact,
)


def test_extract_slots():
    assert extract_slots("I want to cancel order 113542617735902")["order_number"] == "113542617735902"
    assert extract_slots("order #AB-99812 is late")["order_number"] == "AB-99812"
    assert extract_slots("where is purchase 00004587345?")["order_number"] == "00004587345"
    assert extract_slots("my email is jo.doe+shop@example.com")["email"] == "jo.doe+shop@example.com"
    assert extract_slots("I need invoice number INV-20931")["invoice_number"] == "INV-20931"
    assert extract_slots("my name is Ada Lovelace")["name"] == "Ada Lovelace"
    # a number alone is not an order number unless the message speaks of an order
    assert extract_slots("I was charged 123456 times") == {}
    assert extract_slots("how do I order shoes?") == {}
    # "number" is a word, not the invoice number; "is" may stand between.
    assert extract_slots("the invoice number is INV-55210") == {"invoice_number": "INV-55210"}
    assert extract_slots("can I have the invoice number please") == {}


def test_a_message_that_only_gives_slot_values():
    for message in ("order 77342109", "it's order #48213377", "sure, my invoice number is INV-9981"):
        assert only_slots(message), message
    for message in ("I want to cancel order 77342109", "order 77342109 never arrived", "hello"):
        assert not only_slots(message), message


def check_store(store):
    session = uuid.uuid4().hex
    # The first claim binds the session; a later claim gets the first owner back.
    assert store.claim_session(session, "owner-hash") == "owner-hash"
    assert store.claim_session(session, "intruder-hash") == "owner-hash"
    assert store.turns(session, 5) == []
    for i in range(4):
        store.append_turn(session, "user" if i % 2 == 0 else "assistant", f"turn {i}")
    assert store.turns(session, 3) == [("assistant", "turn 1"), ("user", "turn 2"), ("assistant", "turn 3")]
    assert store.turns(uuid.uuid4().hex, 3) == []
    store.set_slots(session, {"order_number": "1"})
    store.set_slots(session, {"email": "a@b.co", "order_number": "2"})
    assert store.slots(session) == {"order_number": "2", "email": "a@b.co"}
    store.save_reply("r-" + session, {"context": "c", "reply": "r"})
    assert store.get_reply("r-" + session) == {"context": "c", "reply": "r"}
    assert store.get_reply("missing-" + session) is None


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_embedded_stores(kind, tmp_path):
    store = InMemoryStore() if kind == "memory" else SQLiteStore(tmp_path / "d.sqlite")
    check_store(store)


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_personal_data_expires_after_the_ttl(kind, tmp_path):
    clock = Clock()
    store = (
        InMemoryStore(ttl_s=3600, clock=clock)
        if kind == "memory"
        else SQLiteStore(tmp_path / "d.sqlite", ttl_s=3600, clock=clock)
    )
    store.claim_session("s", "owner")
    store.append_turn("s", "user", "cancel order 12345678, mail jo@example.com")
    store.set_slots("s", {"order_number": "12345678", "email": "jo@example.com"})
    store.save_reply("r", {"session_id": "s", "context": "cancel order 12345678"})
    clock.now += 3599
    assert store.turns("s", 5) and store.slots("s") and store.get_reply("r")
    assert store.claim_session("s", "intruder") == "owner"
    clock.now += 3601  # an hour after the last write
    assert store.turns("s", 5) == [] and store.slots("s") == {} and store.get_reply("r") is None
    # Nobody used the session for the TTL: it is gone, and the id can start a new one.
    assert store.claim_session("s", "newcomer") == "newcomer"
    if kind == "sqlite":  # and the expired rows are deleted from the file, not only hidden
        conn = sqlite3.connect(tmp_path / "d.sqlite")
        assert conn.execute("SELECT count(*) FROM turns").fetchone() == (0,)
        assert conn.execute("SELECT count(*) FROM slots").fetchone() == (0,)


def test_a_dialogue_file_without_row_times_counts_as_expired(tmp_path):
    path = tmp_path / "old.sqlite"
    conn = sqlite3.connect(path)
    conn.executescript(
        "CREATE TABLE turns (session_id TEXT, seq INTEGER PRIMARY KEY AUTOINCREMENT, role TEXT, text TEXT);"
        "INSERT INTO turns (session_id, role, text) VALUES ('s', 'user', 'my order 12345678');"
    )
    conn.close()
    store = SQLiteStore(path)
    assert store.turns("s", 5) == []
    store.append_turn("s", "user", "hello")
    assert store.turns("s", 5) == [("user", "hello")]


def test_redact_masks_personal_data():
    text = "cancel order 12345678, mail jo.doe@example.com, call +1 555 0100, my name is Ada Lovelace"
    assert redact(text) == "cancel order <number>, mail <email>, call <number>, my name is <name>"
    assert redact("it is for Ada Lovelace, 2 items", ("Ada Lovelace",)) == "it is for <redacted>, 2 items"
    assert redact(None) is None


def test_sqlite_store_persists_across_connections(tmp_path):
    SQLiteStore(tmp_path / "d.sqlite").append_turn("s", "user", "hello")
    assert SQLiteStore(tmp_path / "d.sqlite").turns("s", 5) == [("user", "hello")]


def test_make_store_by_profile(tmp_path):
    assert isinstance(make_store("local", tmp_path, "redis://127.0.0.1:6379/0"), SQLiteStore)
    assert (tmp_path / "support" / "dialogue.sqlite").exists()
    assert isinstance(make_store("production", tmp_path, "redis://127.0.0.1:6379/0"), RedisStore)


@pytest.mark.integration
def test_redis_store():
    import redis

    store = RedisStore("redis://127.0.0.1:6379/0", ttl_s=60, prefix=f"shopml:test:{uuid.uuid4().hex}:")
    try:
        store.ping()
    except redis.exceptions.ConnectionError as exc:
        pytest.skip(f"Redis at 127.0.0.1:6379 is unreachable ({exc})")
    check_store(store)
