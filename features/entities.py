"""The two things features are about: a shopper and a catalog item (ids are strings)."""

from feast import Entity, ValueType

user = Entity(
    name="user",
    join_keys=["user_id"],
    value_type=ValueType.STRING,
    description="A shopper, by the user_id of the canonical event",
)

item = Entity(
    name="item",
    join_keys=["item_id"],
    value_type=ValueType.STRING,
    description="A catalog item, by its item_id (never a model's vocabulary index)",
)
