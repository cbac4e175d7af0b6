from features.checks import check_all_users_online, check_sample_matches_warehouse
from features.online import open_sequences


def test_checks_pass_on_a_fresh_materialisation(local_store, local_config, warehouse):
    with open_sequences(local_store, local_config) as sequences, warehouse.connect() as conn:
        readable = check_all_users_online(sequences, conn)
        sample = check_sample_matches_warehouse(sequences, conn, sample=10)
    assert readable.passed and readable.metadata["users"] == 3
    assert sample.passed and sample.metadata["sampled"] == 3


def test_checks_fail_when_the_online_store_lost_or_garbled_users(local_store, local_config, warehouse, shop):
    import sqlite3

    with open_sequences(local_store, local_config) as sequences, warehouse.connect() as conn:
        key = sequences._user_key("bob")
        with sqlite3.connect(local_config.sqlite_path) as db:
            db.execute('DELETE FROM "shopml_user_recent_items" WHERE entity_key = ?', (key,))
        # alice's row replaced by a wrong sequence that is not newer than the warehouse's.
        sequences.append("alice", "i0", "view", ts=shop.minutes(0))
        readable = check_all_users_online(sequences, conn)
        sample = check_sample_matches_warehouse(sequences, conn, sample=10)
    assert not readable.passed and readable.metadata["missing_sample"] == ["bob"]
    assert not sample.passed and sample.metadata["mismatched"] == 2


def test_a_click_newer_than_the_warehouse_is_ahead_not_wrong(local_store, local_config, warehouse, shop):
    with open_sequences(local_store, local_config) as sequences, warehouse.connect() as conn:
        sequences.append("carol", "i2", "rec_click", ts=shop.minutes(60))
        sample = check_sample_matches_warehouse(sequences, conn, sample=10)
    assert sample.passed and sample.metadata["ahead_of_warehouse"] == 1
