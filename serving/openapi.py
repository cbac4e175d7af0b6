"""The OpenAPI document the services publish at ``/docs.json``, as they really answer.

BentoML 1.4 writes its document from the same pydantic models, but flattens the top level of
each body and keeps only the first branch of an ``anyOf``, so a field that may be null
(``fallback``, ``rec_id``, ``category``…) reads as never null; it marks every request body
optional although an empty body is a 400; it documents its error body with a string
``detail`` where the 400 it sends carries a list of field errors; and it knows nothing of the
API key or of the guard's 401/413/415/503. This module builds the document again from the models
(JSON Schema 2020-12, hence OpenAPI 3.1), keeps BentoML's paths, tags, descriptions and
probes, and adds what the guard and each API send. A middleware serves it in place of
BentoML's, so it holds for any field a model gains.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import BaseModel, Field
from pydantic.json_schema import GenerateJsonSchema, models_json_schema
from starlette.types import ASGIApp, Receive, Scope, Send

OPENAPI_VERSION = "3.1.0"
DOCS_PATH = "/docs.json"
REF = "#/components/schemas/{model}"
SECURITY_SCHEMES = {
    "ApiKeyHeader": {
        "type": "apiKey",
        "in": "header",
        "name": "X-API-Key",
        "description": "the key set in SHOPML_API_KEY (always set in the production profile)",
    },
    "BearerKey": {"type": "http", "scheme": "bearer", "description": "the same key as a bearer token"},
}


class ValidationIssue(BaseModel):
    """One field error of a request body (pydantic's error, without the input)."""

    type: str = Field(description='what is wrong, e.g. "missing", "string_too_long", "json_invalid"')
    loc: list[str | int] = Field(
        description="where in the body: field names and list indices; [] for the body"
    )
    msg: str
    url: str | None = Field(None, description="pydantic's page about this kind of error")


class ErrorResponse(BaseModel):
    """Every 4xx and 5xx body of both services."""

    error: str = Field(description="what went wrong, for a person to read")
    detail: list[ValidationIssue] = Field(
        default_factory=list,
        description="sent with a 400 for a body that fails validation: one entry per field",
    )


# Sent for any API path, whatever the API does (the guard in serving/http.py and BentoML).
COMMON_ERRORS = {
    400: "the body is not valid JSON or does not match the request schema (see `detail`)",
    413: "the body is larger than the configured limit (SHOPML_MAX_BODY_BYTES)",
    415: "the body is not application/json",
    429: "too many requests: this client is past its rate limit (SHOPML_RATE_LIMIT; retry after "
    "Retry-After seconds), or the service's max_concurrency is reached",
    500: "a bug: the server log has the traceback",
    503: "overloaded: more requests in progress than SHOPML_MAX_IN_FLIGHT; retry after Retry-After seconds",
    504: "the request took longer than the service's timeout",
}
UNAUTHORIZED = "the API key is missing or wrong"


class _AlwaysSent(GenerateJsonSchema):
    """Response schemas list every field as required: BentoML serialises all of them, a
    field without a value as null (the type says when it may be)."""

    def field_is_required(self, field, total: bool) -> bool:
        if self.mode == "serialization":
            return not field.get("serialization_exclude")
        return super().field_is_required(field, total)


def user_model(spec: type[BaseModel]) -> type[BaseModel]:
    """The pydantic model an API was declared with (BentoML wraps it in an IODescriptor)."""
    for cls in spec.__mro__[1:]:
        if isinstance(cls, type) and issubclass(cls, BaseModel) and not cls.__module__.startswith("_bentoml"):
            return cls
    return spec


def _schemas(
    requests: Iterable[type[BaseModel]], responses: Iterable[type[BaseModel]]
) -> tuple[dict[tuple[type[BaseModel], str], str], dict[str, Any]]:
    """(model, mode) → component name, and the components: one JSON Schema run over all
    models, so a model used both ways gets two names and shared parts one."""
    # ErrorResponse as a request would read: its ``detail`` is only sent with a 400.
    models = [(m, "validation") for m in dict.fromkeys([*requests, ErrorResponse])]
    models += [(m, "serialization") for m in dict.fromkeys(responses)]
    refs, top = models_json_schema(models, ref_template=REF, schema_generator=_AlwaysSent)
    prefix = REF.format(model="")
    return {key: ref["$ref"].removeprefix(prefix) for key, ref in refs.items()}, top.get("$defs", {})


def _json(name: str) -> dict[str, Any]:
    return {"application/json": {"schema": {"$ref": REF.format(model=name)}}}


def openapi_document(
    service: Any,
    write_paths: Iterable[str] = (),
    errors: Mapping[str, Mapping[int, str]] | None = None,
) -> dict[str, Any]:
    """The OpenAPI 3.1 document of a BentoML service.

    ``write_paths`` need the API key (401 and the security schemes); ``errors`` adds, per
    route, the statuses that API itself answers with an ``ErrorResponse`` and what they mean.
    """
    write_paths, errors = frozenset(write_paths), dict(errors or {})
    document = service.openapi_spec.asdict()  # BentoML's: info, servers, tags, probes
    apis = list(service.apis.values())
    if any(api.is_task for api in apis):
        raise ValueError("task APIs are not described here; add them before serving this document")
    requests = {api.route: user_model(api.input_spec) for api in apis}
    responses = {api.route: user_model(api.output_spec) for api in apis}
    unknown = (set(errors) | write_paths) - set(requests)
    if unknown:
        raise ValueError(f"errors or write paths name routes the service does not have: {sorted(unknown)}")
    names, schemas = _schemas(requests.values(), responses.values())
    error = names[(ErrorResponse, "validation")]

    for api in apis:
        operation = document["paths"][api.route]["post"]
        request = names[(requests[api.route], "validation")]
        response = names[(responses[api.route], "serialization")]
        operation["requestBody"] = {
            # An empty body is validated as {}: a 400 as soon as the model has a required field.
            "required": bool(schemas[request].get("required")),
            "content": _json(request),
        }
        answers: dict[int, str] = {**COMMON_ERRORS, **errors.get(api.route, {})}
        if api.route in write_paths:
            answers[401] = UNAUTHORIZED
            operation["security"] = [{name: []} for name in SECURITY_SCHEMES]
        operation["responses"] = {
            "200": {"description": "Successful Response", "content": _json(response)},
            **{str(s): {"description": answers[s], "content": _json(error)} for s in sorted(answers)},
        }
        if "503" in operation["responses"]:
            operation["responses"]["503"]["headers"] = {
                "Retry-After": {
                    "description": "seconds to wait, sent when the worker is overloaded",
                    "schema": {"type": "integer", "minimum": 0},
                }
            }
        operation["responses"]["429"]["headers"] = {
            "Retry-After": {
                "description": "seconds to wait, sent when the client is past its rate limit",
                "schema": {"type": "integer", "minimum": 1},
            }
        }
        if api.route in write_paths:
            operation["responses"]["401"]["headers"] = {
                "WWW-Authenticate": {"required": True, "schema": {"type": "string", "const": "Bearer"}}
            }

    readyz = document["paths"].get("/readyz", {}).get("get")
    if readyz is not None:
        readyz["responses"]["503"] = {"description": "not ready: a model or a store it needs is missing"}
    document["openapi"] = OPENAPI_VERSION
    document["components"] = {"schemas": schemas}
    if write_paths:
        document["components"]["securitySchemes"] = SECURITY_SCHEMES
    return document


class OpenAPIDocs:
    """ASGI middleware: answers ``GET /docs.json`` with ``openapi_document`` (built once)."""

    def __init__(
        self,
        app: ASGIApp,
        service: Any,
        write_paths: Iterable[str] = (),
        errors: Mapping[str, Mapping[int, str]] | None = None,
    ):
        self.app = app
        self.service = service
        self.write_paths = frozenset(write_paths)
        self.errors = errors
        self._body: bytes | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != DOCS_PATH or scope["method"] not in ("GET", "HEAD"):
            await self.app(scope, receive, send)
            return
        if self._body is None:
            document = openapi_document(self.service, self.write_paths, self.errors)
            self._body = json.dumps(document).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(self._body)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else self._body})


def publish(
    service: Any, write_paths: Iterable[str] = (), errors: Mapping[str, Mapping[int, str]] | None = None
):
    """Serve ``openapi_document(service, …)`` at /docs.json instead of BentoML's document."""
    service.add_asgi_middleware(OpenAPIDocs, service=service, write_paths=write_paths, errors=errors)
