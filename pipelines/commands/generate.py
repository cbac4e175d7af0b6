"""shopml generate: write a synthetic shop to the landing folder."""

from __future__ import annotations

import argparse
from dataclasses import fields
from datetime import date

from data_contracts.settings import Settings
from data_contracts.synthetic import ShopConfig, generate_shop


def add_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = ShopConfig()
    for field in fields(ShopConfig):
        value = getattr(defaults, field.name)
        kind = date.fromisoformat if isinstance(value, date) else type(value)
        parser.add_argument(
            f"--{field.name.replace('_', '-')}", type=kind, default=value, help=f"default {value}"
        )
    parser.add_argument("--landing", help="landing folder (default: the settings' landing folder)")


def config_from_args(args: argparse.Namespace) -> ShopConfig:
    return ShopConfig(**{f.name: getattr(args, f.name) for f in fields(ShopConfig)})


def run(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    landing = args.landing or settings.landing_dir
    summary = generate_shop(config_from_args(args), landing)
    print(
        f"wrote {summary.events:,} events ({summary.bad_rows:,} broken on purpose, {summary.malformed_lines} malformed"
        f" lines) over {summary.days} days and {summary.catalog_rows:,} items to {landing}"
    )
    return 0
