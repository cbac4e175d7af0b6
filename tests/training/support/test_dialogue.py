from __future__ import annotations

import uuid

import pytest

from training.support.dialogue import (
    InMemoryStore,
    RedisStore,
    SQLiteStore,
    extract_slots,
    make_store,
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


def check_store(store):
    session = uuid.uuid4().hex
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
