import pytest

from features.config import open_store
from features.online import OnlineStoreError, open_sequences

FEATURES = ["user_recent_items:recent_item_ids", "user_recent_items:recent_event_types"]


def test_unknown_users_get_empty_sequences(local_store, local_config):
    with open_sequences(local_store, local_config) as sequences:
        nobody = sequences.read("nobody")
        assert (nobody.item_ids, nobody.event_types, nobody.last_event_ts) == ([], [], None)
        many = sequences.read_many(["bob", "nobody", "alice", "bob"])
    assert [len(s) for s in many] == [3, 0, 5, 3]
    assert [s.user_id for s in many] == ["bob", "nobody", "alice", "bob"]


def test_append_trims_to_n_and_feast_sees_it(local_store, local_config, shop):
    with open_sequences(local_store, local_config) as sequences:
        new = sequences.append("alice", "i7", "rec_click", ts=shop.minutes(30))
        assert new.item_ids == ["i3", "i4", "i5", "i9", "i7"]
        assert new.event_types[-1] == "rec_click"
        assert new.last_event_ts == shop.minutes(30)
        assert sequences.read("alice").item_ids == new.item_ids
        # A first click creates the row.
        assert sequences.append("dave", "i1").item_ids == ["i1"]
    online = local_store.get_online_features(
        features=FEATURES, entity_rows=[{"user_id": "alice"}, {"user_id": "dave"}]
    ).to_dict()
    assert online["recent_item_ids"] == [["i3", "i4", "i5", "i9", "i7"], ["i1"]]
    assert online["recent_event_types"][0][-1] == "rec_click"


def test_append_refuses_bad_events(local_store, local_config):
    with open_sequences(local_store, local_config) as sequences:
        with pytest.raises(ValueError, match="event_type"):
            sequences.append("alice", "i1", "rec_impression")
        with pytest.raises(ValueError, match="item_id"):
            sequences.append("alice", "", "view")
        with pytest.raises(ValueError, match="user_id"):
            sequences.append("", "i1", "view")
        assert len(sequences.read("alice")) == 5


def test_50_concurrent_appends_from_threads_all_land_in_order(local_store, local_config, shop):
    shop.concurrent_appends_threads(local_store, local_config)


@pytest.mark.slow
def test_50_concurrent_appends_from_processes_all_land_in_order(local_store, local_config, shop):
    shop.concurrent_appends_processes(local_store, local_config)


def test_missing_online_store_names_its_path(local_store, local_config):
    local_config.sqlite_path.unlink()
    with open_sequences(local_store, local_config) as sequences:
        with pytest.raises(
            OnlineStoreError, match=f"SQLite online store {local_config.sqlite_path}.*does not exist"
        ):
            sequences.read("alice")


def test_corrupt_online_store_names_its_path(local_store, local_config):
    for suffix in ("-wal", "-shm"):
        local_config.sqlite_path.with_name(local_config.sqlite_path.name + suffix).unlink(missing_ok=True)
    local_config.sqlite_path.write_bytes(b"this is not a database" * 100)
    with open_sequences(local_store, local_config) as sequences:
        with pytest.raises(
            OnlineStoreError, match=f"SQLite online store {local_config.sqlite_path}.*unreadable"
        ):
            sequences.read("alice")


def test_a_store_never_applied_says_so(local_config):
    store = open_store(local_config)
    with pytest.raises(OnlineStoreError, match="not in the registry.*apply"):
        open_sequences(store, local_config)
