"""The OpenAPI document lists the errors each route really returns, as problem+json; and a
405 names every method of the resource (chassis.openapi, chassis.errors)."""

from __future__ import annotations

from typing import Annotated, Any, ClassVar

import pytest
from chassis.app import create_service_app
from chassis.deps import AdminPrincipal, CurrentPrincipal, IdempotencyKey
from chassis.errors import PROBLEM_JSON, Conflict
from chassis.openapi import PATH_SEGMENT, exactly_one_of, responds
from chassis.settings import ServiceSettings
from fastapi import APIRouter, Depends, Header, Query
from fastapi.testclient import TestClient
from pydantic import BaseModel, ConfigDict

PROBLEM = {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}}


class DemoSettings(ServiceSettings):
    service_name: ClassVar[str] = "demo"


class Item(BaseModel):
    name: str


class Payment(BaseModel):
    model_config = ConfigDict(json_schema_extra=exactly_one_of("card", "method"))
    card: str | None = None
    method: str | None = None


@responds(418, "a teapot")
async def teapot_check() -> None:
    return None


def build_app() -> TestClient:
    router = APIRouter(prefix="/api/demo")

    @router.get("/public")
    async def public() -> dict[str, str]:
        return {}

    @router.get("/search")
    async def search(q: Annotated[str, Query(max_length=5)] = "") -> dict[str, str]:
        return {}

    @router.get("/me")
    async def me(_: CurrentPrincipal,
                 hidden: Annotated[str | None, Header(include_in_schema=False)] = None,
                 ) -> dict[str, str]:
        return {}

    @router.post("/items", status_code=201, responses={409: {"description": "name taken"}})
    async def create(item: Item, _: AdminPrincipal) -> Item:
        raise Conflict("taken")

    @router.get("/items/{item_id}")
    async def read(item_id: str) -> dict[str, str]:
        return {}

    @router.delete("/items/{item_id}", status_code=204)
    async def delete(item_id: str) -> None:
        return None

    @router.post("/orders", status_code=202)
    async def order(payment: Payment, key: IdempotencyKey,
                    _: Annotated[None, Depends(teapot_check)]) -> dict[str, str]:
        return {"key": key}

    settings = DemoSettings(nats_url="", database_url="")
    return TestClient(create_service_app(settings, routers=[router]),
                      raise_server_exceptions=False)


@pytest.fixture(scope="module")
def client() -> TestClient:
    with build_app() as c:
        yield c


@pytest.fixture(scope="module")
def spec(client: TestClient) -> dict[str, Any]:
    document: dict[str, Any] = client.get("/api/demo/openapi.json").json()
    return document


def responses(spec: dict[str, Any], method: str, path: str) -> dict[str, Any]:
    return spec["paths"][path][method]["responses"]  # type: ignore[no-any-return]


def test_every_route_may_answer_400_429_and_503(spec: dict[str, Any]) -> None:
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            assert {"400", "429", "503"} <= set(operation["responses"]), (method, path)
    public = responses(spec, "get", "/api/demo/public")
    assert set(public) == {"200", "400", "429", "503"}
    assert "Retry-After" in public["429"]["headers"]


def test_error_answers_are_problem_json_fastapis_422_shape_is_gone(spec: dict[str, Any]) -> None:
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            for status, response in operation["responses"].items():
                if int(status) >= 400:
                    assert response["content"] == PROBLEM, (method, path, status)
    schemas = spec["components"]["schemas"]
    assert "HTTPValidationError" not in schemas and "ValidationError" not in schemas
    assert schemas["Problem"]["properties"]["status"]["type"] == "integer"
    assert "errors" in schemas["Problem"]["properties"]


def test_422_only_where_there_is_input_to_refuse(spec: dict[str, Any]) -> None:
    assert "422" in responses(spec, "get", "/api/demo/search")
    assert "422" in responses(spec, "post", "/api/demo/items")
    assert "413" in responses(spec, "post", "/api/demo/items")
    assert "413" not in responses(spec, "get", "/api/demo/search")
    # The token's Authorization header is hidden, so nothing here can fail validation.
    assert "422" not in responses(spec, "get", "/api/demo/me")


def test_the_token_check_brings_401_and_the_bearer_requirement(spec: dict[str, Any]) -> None:
    me = spec["paths"]["/api/demo/me"]["get"]
    assert "401" in me["responses"] and "403" not in me["responses"]
    assert "WWW-Authenticate" in me["responses"]["401"]["headers"]
    assert me["security"] == [{"bearer": []}]
    assert "security" not in spec["paths"]["/api/demo/public"]["get"]
    schemes = spec["components"]["securitySchemes"]
    assert schemes["bearer"]["scheme"] == "bearer"
    assert schemes["password"]["flows"]["password"]["tokenUrl"] == "/api/identity/token"


def test_the_admin_check_brings_403_and_routes_keep_their_own(spec: dict[str, Any]) -> None:
    create = responses(spec, "post", "/api/demo/items")
    assert {"401", "403", "409"} <= set(create)
    assert create["409"]["description"] == "name taken"
    assert create["409"]["content"] == PROBLEM


def test_path_parameters_bring_404_and_the_edges_segment_rule(spec: dict[str, Any]) -> None:
    read = spec["paths"]["/api/demo/items/{item_id}"]["get"]
    assert "404" in read["responses"]
    (parameter,) = read["parameters"]
    assert parameter["schema"]["pattern"] == PATH_SEGMENT
    assert "404" not in responses(spec, "get", "/api/demo/public")


def test_marked_dependencies_add_their_statuses_and_headers(spec: dict[str, Any]) -> None:
    order = spec["paths"]["/api/demo/orders"]["post"]
    assert order["responses"]["418"]["description"] == "a teapot"
    (key,) = [p for p in order["parameters"] if p["name"] == "Idempotency-Key"]
    assert key["in"] == "header" and key["required"] is True
    assert key["schema"] == {"type": "string", "minLength": 1, "maxLength": 200}
    payment = spec["components"]["schemas"]["Payment"]
    assert [branch["required"] for branch in payment["oneOf"]] == [["card"], ["method"]]


@pytest.mark.parametrize("key", [None, "", "k" * 201])
def test_a_missing_or_oversized_idempotency_key_is_400(client: TestClient,
                                                        key: str | None) -> None:
    headers = {} if key is None else {"Idempotency-Key": key}
    answer = client.post("/api/demo/orders", json={"card": "1"}, headers=headers)
    assert answer.status_code == 400
    assert answer.headers["content-type"] == PROBLEM_JSON
    ok = client.post("/api/demo/orders", json={"card": "1"}, headers={"Idempotency-Key": "k"})
    assert ok.status_code == 202 and ok.json() == {"key": "k"}


@pytest.mark.parametrize(("method", "path", "allow"), [
    ("PUT", "/api/demo/items/1", "DELETE, GET"),
    ("OPTIONS", "/api/demo/items", "POST"),
    ("PATCH", "/api/demo/public", "GET"),
])
def test_405_names_every_method_of_the_resource(client: TestClient, method: str, path: str,
                                                allow: str) -> None:
    answer = client.request(method, path)
    assert answer.status_code == 405
    assert answer.headers["allow"] == allow
    assert answer.headers["content-type"] == PROBLEM_JSON
