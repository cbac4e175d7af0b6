"""The shop profile: embedded defaults, a JSON or TOML file, then single fields from the environment."""

from __future__ import annotations

import json

import pytest

from data_contracts.shop import ShopProfile


def test_defaults_describe_a_whole_shop():
    shop = ShopProfile.from_env({})
    assert shop == ShopProfile()
    assert shop.languages == ("en",) and shop.return_window_days == 30 and shop.support_phone


def test_a_file_then_the_environment_override_the_defaults(tmp_path):
    toml = tmp_path / "shop.toml"
    toml.write_text('name = "Kestrel Sports"\nsupport_phone = "+44 20 7946 0000"\nlanguages = ["en", "de"]\n')
    shop = ShopProfile.from_env({"SHOPML_SHOP_PROFILE": str(toml), "SHOPML_SHOP_RETURN_WINDOW_DAYS": "14"})
    assert (shop.name, shop.support_phone, shop.languages) == (
        "Kestrel Sports",
        "+44 20 7946 0000",
        ("en", "de"),
    )
    assert shop.return_window_days == 14 and shop.site_url == ShopProfile().site_url
    as_json = tmp_path / "shop.json"
    as_json.write_text(json.dumps({"delivery_options": ["pick-up in store"]}))
    shop = ShopProfile.from_env(
        {
            "SHOPML_SHOP_PROFILE": str(as_json),
            "SHOPML_SHOP_SUPPORT_PHONE": "",
            "SHOPML_SHOP_LANGUAGES": "en, fr",
        }
    )
    assert shop.delivery_options == ("pick-up in store",)
    assert shop.support_phone is None  # set to nothing: the shop has no phone line
    assert shop.languages == ("en", "fr")


def test_bad_profiles_say_what_is_wrong(tmp_path):
    with pytest.raises(ValueError, match="unknown shop profile fields"):
        ShopProfile().updated({"colour": "red"})
    with pytest.raises(ValueError, match="whole number"):
        ShopProfile.from_env({"SHOPML_SHOP_RETURN_WINDOW_DAYS": "a month"})
    with pytest.raises(ValueError, match="needs a name"):
        ShopProfile.from_env({"SHOPML_SHOP_NAME": " "})
    with pytest.raises(ValueError, match="at least one language"):
        ShopProfile.from_env({"SHOPML_SHOP_LANGUAGES": ""})
    broken = tmp_path / "shop.toml"
    broken.write_text("name = ")
    with pytest.raises(ValueError, match="not valid"):
        ShopProfile.from_env({"SHOPML_SHOP_PROFILE": str(broken)})
    with pytest.raises(ValueError, match="cannot read"):
        ShopProfile.from_env({"SHOPML_SHOP_PROFILE": str(tmp_path / "absent.toml")})
