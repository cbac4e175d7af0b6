"""Dagster orchestration of shopml: assets, checks, resources, schedules, sensors, the CLI."""
