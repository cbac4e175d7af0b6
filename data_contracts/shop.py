"""The shop's own facts: name, site, support channels and hours, policies, languages served.

Every placeholder of the knowledge base and of generated replies that names a shop fact is
filled from here; a fact set to nothing (an empty value) is left out of replies, never
written as a stand-in. Embedded defaults describe an example shop; an operator overrides
them with a JSON or TOML file (``SHOPML_SHOP_PROFILE``) and then single fields with
``SHOPML_SHOP_<FIELD>`` (e.g. ``SHOPML_SHOP_NAME``, ``SHOPML_SHOP_LANGUAGES=en,de``,
``SHOPML_SHOP_SUPPORT_PHONE=`` to have none).
"""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path


@dataclass(frozen=True)
class ShopProfile:
    """Facts about the shop that replies may state; ``None`` means the shop has none."""

    # The shop's name as shoppers know it (also the name of its website and app).
    name: str = "Maple Street Market"
    site_url: str | None = "https://shop.example.com"
    support_email: str | None = "support@shop.example.com"
    support_phone: str | None = "+1 555 0100"
    # What the live chat is called ("through the live chat on our website").
    live_chat: str | None = "live chat"
    support_hours: str | None = "Monday to Friday, 9:00 to 18:00 UTC"
    # Days after delivery within which an item can be returned.
    return_window_days: int | None = 30
    # How long a refund takes once the return arrives.
    refund_time: str | None = "5 to 10 business days"
    delivery_options: tuple[str, ...] = (
        "standard delivery (3 to 5 business days)",
        "express delivery (1 to 2 business days)",
    )
    # ISO 639-1 codes of the languages the shop answers in; other languages go to a human.
    languages: tuple[str, ...] = ("en",)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ShopProfile:
        """Defaults, then the file named by SHOPML_SHOP_PROFILE, then SHOPML_SHOP_<FIELD>."""
        env = os.environ if env is None else env
        values: dict[str, object] = {}
        if env.get("SHOPML_SHOP_PROFILE"):
            values.update(read_profile_file(Path(env["SHOPML_SHOP_PROFILE"])))
        for f in fields(cls):
            key = f"SHOPML_SHOP_{f.name.upper()}"
            if key in env:
                values[f.name] = env[key]
        return cls().updated(values)

    def updated(self, values: Mapping[str, object]) -> ShopProfile:
        """A copy with ``values`` (text from env or a file) converted to each field's type."""
        known = {f.name for f in fields(self)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown shop profile fields {unknown}; known: {sorted(known)}")
        out = {}
        for name, value in values.items():
            if name in ("delivery_options", "languages"):
                items = value.split(",") if isinstance(value, str) else list(value or [])
                out[name] = tuple(str(v).strip() for v in items if str(v).strip())
            elif value is None or (isinstance(value, str) and not value.strip()):
                if name == "name":
                    raise ValueError("the shop profile needs a name")
                out[name] = None
            elif name == "return_window_days":
                try:
                    out[name] = int(value)
                except (TypeError, ValueError):
                    raise ValueError(f"return_window_days must be a whole number, not {value!r}") from None
            else:
                out[name] = str(value).strip()
        if "languages" in out and not out["languages"]:
            raise ValueError("the shop profile needs at least one language")
        return replace(self, **out)


def read_profile_file(path: Path) -> dict:
    """A shop profile file: JSON (``.json``) or TOML (anything else), one table of fields."""
    try:
        text = path.read_text(encoding="utf-8")
        data = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except OSError as e:
        raise ValueError(f"cannot read the shop profile {path} ({e})") from e
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as e:
        raise ValueError(f"the shop profile {path} is not valid {path.suffix or 'TOML'} ({e})") from e
    if not isinstance(data, dict):
        raise ValueError(f"the shop profile {path} must hold one table of fields")
    return data
