"""The published OpenAPI document against the services' real answers (through the ASGI apps).

The live fuzzing of the same documents (schemathesis, every check) is in test_live.py.
"""

from __future__ import annotations

import types
import typing

import pytest
from jsonschema import Draft202012Validator
from pydantic import BaseModel

KEY = "test-key-123"


@pytest.fixture
def recommender(shop_settings, recommender_tag, monkeypatch, asgi_client):
    monkeypatch.setenv("SHOPML_RECOMMENDER_TAG", recommender_tag)
    monkeypatch.setenv("SHOPML_API_KEY", KEY)
    monkeypatch.setenv("SHOPML_MAX_BODY_BYTES", "4096")
    from serving.recommender.service import RecommenderService

    return asgi_client(RecommenderService)


@pytest.fixture
def support(shop_settings, support_tag, monkeypatch, asgi_client):
    monkeypatch.setenv("SHOPML_SUPPORT_TAG", support_tag)
    monkeypatch.setenv("SHOPML_API_KEY", KEY)
    from serving.support.service import SupportService

    return asgi_client(SupportService)


def validator(document: dict, schema: dict) -> Draft202012Validator:
    """A JSON Schema validator of ``schema`` whose "#/components/…" refs resolve in ``document``
    (the other keys of an OpenAPI document are no JSON Schema keywords and are ignored)."""
    return Draft202012Validator({"components": document["components"], **schema})


def check_answer(document: dict, path: str, response) -> None:
    """The answer's status is documented for ``path`` and its body matches that schema."""
    answers = document["paths"][path]["post"]["responses"]
    assert str(response.status_code) in answers, f"{path} answered {response.status_code}, not documented"
    schema = answers[str(response.status_code)]["content"]["application/json"]["schema"]
    errors = [e.message for e in validator(document, schema).iter_errors(response.json())]
    assert not errors, f"{path} {response.status_code}: {errors} in {response.text}"


def admits_none(annotation) -> bool:
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return admits_none(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        return any(a is type(None) or admits_none(a) for a in typing.get_args(annotation))
    return annotation is type(None)


def models_of(annotation) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in typing.get_args(annotation) for m in models_of(arg)]


@pytest.mark.parametrize("service", ["recommender", "support"])
def test_every_field_that_may_be_null_is_nullable_in_the_document(service, request):
    from serving.openapi import user_model

    client = request.getfixturevalue(service)
    document = client.get("/docs.json").json()
    assert document["openapi"].startswith("3.1")
    schemas = document["components"]["schemas"]
    if service == "recommender":
        from serving.recommender.service import RecommenderService as svc
    else:
        from serving.support.service import SupportService as svc
    seen, todo, checked = set(), [], 0
    for api in svc.apis.values():
        todo += [user_model(api.input_spec), user_model(api.output_spec)]
    while todo:
        model = todo.pop()
        if model in seen:
            continue
        seen.add(model)
        assert model.__name__ in schemas, f"{model.__name__} is not in the document"
        properties = schemas[model.__name__]["properties"]
        for name, field in model.model_fields.items():
            todo += models_of(field.annotation)
            nullable = validator(document, properties[name]).is_valid(None)
            assert nullable == admits_none(field.annotation), (
                f"{model.__name__}.{name}: null accepted {nullable}"
            )
            checked += 1
    assert checked > 20


def test_recommender_answers_match_the_document(recommender):
    document = recommender.get("/docs.json").json()
    answers = [
        ("/recommend", recommender.post("/recommend", json={"user_id": "u0", "k": 3})),
        ("/recommend", recommender.post("/recommend", json={"user_id": "ghost", "category": "Home"})),
        ("/similar", recommender.post("/similar", json={"item_id": "i3", "k": 2})),
        ("/search", recommender.post("/search", json={"query": "item"})),
        (
            "/events",
            recommender.post("/events", json={"user_id": "u0", "item_id": "i1", "event_type": "view"}),
        ),
    ]
    assert answers[1][1].json()["fallback"] == "empty_sequence" and answers[0][1].json()["fallback"] is None
    assert answers[3][1].json()["index_version"] is None  # no index built: nulls in the answer
    click = {"user_id": "u0", "item_id": "i1", "event_type": "rec_click", "rec_id": None}
    answers.append(("/events", recommender.post("/events", json=click, headers={"X-API-Key": KEY})))
    answers += [
        ("/recommend", recommender.post("/recommend", json={"user_id": "u0", "k": 0})),
        (
            "/recommend",
            recommender.post(
                "/recommend", content=b"{not json", headers={"content-type": "application/json"}
            ),
        ),
        (
            "/recommend",
            recommender.post("/recommend", content=b"x" * 5000, headers={"content-type": "application/json"}),
        ),
        ("/recommend", recommender.post("/recommend", content=b"<a/>", headers={"content-type": "text/xml"})),
        ("/similar", recommender.post("/similar", json={"item_id": "no-such-item"})),
    ]
    statuses = [response.status_code for _, response in answers]
    assert statuses == [200, 200, 200, 200, 401, 200, 400, 400, 413, 415, 404]
    for path, response in answers:
        check_answer(document, path, response)
    validation = answers[6][1].json()
    assert isinstance(validation["detail"], list) and validation["detail"][0]["loc"] == ["k"]


def test_support_answers_match_the_document(support):
    document = support.get("/docs.json").json()
    chat = support.post("/chat", json={"message": "How do I cancel my order?"})
    answers = [
        ("/chat", chat),
        (
            "/chat",
            support.post("/chat", json={"session_id": chat.json()["session_id"], "message": "and then?"}),
        ),
        ("/chat", support.post("/chat", json={"message": ""})),
        ("/feedback", support.post("/feedback", json={"target_id": chat.json()["reply_id"], "rating": 1})),
        (
            "/feedback",
            support.post(
                "/feedback",
                json={"target_id": chat.json()["reply_id"], "rating": 1},
                headers={"X-API-Key": KEY},
            ),
        ),
        (
            "/feedback",
            support.post("/feedback", json={"target_id": "0" * 32, "rating": -1}, headers={"X-API-Key": KEY}),
        ),
    ]
    assert [r.status_code for _, r in answers] == [200, 403, 400, 401, 200, 404]
    assert answers[0][1].json()["session_token"] and answers[0][1].json()["fallback"] is None
    for path, response in answers:
        check_answer(document, path, response)


@pytest.mark.parametrize("service", ["recommender", "support"])
def test_bodies_are_required_and_writes_name_the_key(service, request):
    client = request.getfixturevalue(service)
    document = client.get("/docs.json").json()
    schemes = document["components"]["securitySchemes"]
    assert schemes["ApiKeyHeader"] == {
        **schemes["ApiKeyHeader"],
        "type": "apiKey",
        "in": "header",
        "name": "X-API-Key",
    }
    operations = {path: item["post"] for path, item in document["paths"].items() if "post" in item}
    assert operations
    for path, operation in operations.items():
        empty = client.post(path, content=b"", headers={"content-type": "application/json", "X-API-Key": KEY})
        assert operation["requestBody"]["required"] == (empty.status_code == 400), path
        keyless = client.post(path, json={})
        if "security" in operation:
            assert keyless.status_code == 401 and keyless.headers["www-authenticate"] == "Bearer", path
            assert "401" in operation["responses"]
        else:
            assert keyless.status_code != 401, path
    assert sum("security" in op for op in operations.values()) == 1  # /events, /feedback
