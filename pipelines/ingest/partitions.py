"""The partitions of the event tables: one per landing day that has data.

A fixed calendar from a start date listed every day since it, most of them "missing" in
the UI although nothing had failed. Partitions follow the data instead: a landing day
becomes a partition (a dynamic one, kept in the Dagster instance) when files land for it,
through the landing sensor, ``shopml land`` or ``shopml ingest``; a day without files is no
partition. The instance lists them in the order they were added, oldest day first within
each addition; a range of partitions (a backfill, one ingest run) is a range in that order.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from dagster import DagsterInstance, DynamicPartitionsDefinition

landing_days = DynamicPartitionsDefinition(name="landing_days")


def register_landing_days(instance: DagsterInstance, days: Iterable[str]) -> list[str]:
    """Make each day a partition unless it is one; return the days added, oldest first."""
    existing = set(instance.get_dynamic_partitions(landing_days.name))
    added = sorted(set(days) - existing)
    if added:
        instance.add_dynamic_partitions(landing_days.name, added)
    return added


def partition_ranges(days: Iterable[str], ordered: Sequence[str]) -> list[tuple[str, str]]:
    """(first, last) of each run of ``days`` that are neighbours in the partition order ``ordered``.

    One range is one single-run backfill: the partitions between its ends are exactly the
    days asked for. Days missing from ``ordered`` (not registered) are an error.
    """
    wanted = set(days)
    unknown = sorted(wanted - set(ordered))
    if unknown:
        raise ValueError(f"not partitions of {landing_days.name}: {', '.join(unknown)}")
    ranges: list[tuple[str, str]] = []
    previous = False
    for key in ordered:
        inside = key in wanted
        if inside and previous:
            ranges[-1] = (ranges[-1][0], key)
        elif inside:
            ranges.append((key, key))
        previous = inside
    return ranges
