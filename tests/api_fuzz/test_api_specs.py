"""Every service's OpenAPI document tells the truth: schemathesis fuzzes each one through the
edge of a throw-away platform, as a customer and as an admin, with all of its default checks
(no server errors; status codes, content types, headers and bodies as documented; invalid
requests refused, valid ones accepted; auth enforced; deleted resources gone, created ones
there). docs/security.md, "API specifications and fuzzing".

The platform is this module's own: fuzzing writes junk (products, categories, addresses),
rotates identity's signing key and trips rate limits, which must not disturb the e2e tests.
The documents come from the services' code (``create_app().openapi()``, at collection, when no
platform is up yet); the first test checks the edge serves exactly those, publicly.

Bounded and repeatable: ``MERCATO_FUZZ_EXAMPLES`` fuzzed requests per operation and role (10),
``MERCATO_FUZZ_SCENARIOS`` stateful scenarios per schema (5), the same cases every run unless
``MERCATO_FUZZ_RANDOM=1`` asks for new ones (do, after changing an API).
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import schemathesis
import schemathesis.transport.requests as schemathesis_requests
from edge_helpers import Platform, new_client_address, running_platform, scratch_home
from hypothesis import HealthCheck, Phase, settings
from hypothesis.errors import FlakyStrategyDefinition
from requests.adapters import HTTPAdapter
from shop import customer_with_address

pytestmark = pytest.mark.e2e

# Each service and the prefix its chassis serves the docs and the OpenAPI document under.
API_ROOTS = {"identity": "/api/identity", "catalog": "/api/catalog",
             "inventory": "/api/inventory", "cart": "/api/cart", "orders": "/api/orders",
             "payments": "/api/payments", "shipping": "/api/shipping",
             "notifications": "/api/notifications", "order_history": "/api/history"}
SERVICES = tuple(API_ROOTS)
ROLES = ("customer", "admin")
EXAMPLES = int(os.environ.get("MERCATO_FUZZ_EXAMPLES", "10"))
SCENARIOS = int(os.environ.get("MERCATO_FUZZ_SCENARIOS", "5"))
RANDOM = os.environ.get("MERCATO_FUZZ_RANDOM") == "1"

# What a schema cannot state, so a schema-valid request may still be refused; every other
# answer positive_data_acceptance expects stays:
# - a body or path naming another resource by id (a product, a category, an address, a
#   payment method): which ids exist is data, not schema, so a random one gets 422;
# - a card number's Luhn check digit: 422;
# - If-Match naming a version other than the current one: 412.
POSITIVE = ["2xx", "3xx", "401", "403", "404", "409", "429", "5xx"]
NOT_IN_THE_SCHEMA = {
    "PUT /api/cart/items/{product_id}": ["422"],
    "POST /api/cart/checkout": ["422"],
    "POST /api/orders": ["422"],
    "POST /api/catalog/products": ["422"],
    "PATCH /api/catalog/products/{product_id}": ["412", "422"],
    "PUT /api/catalog/products/{product_id}": ["412", "422"],
    "POST /api/payments/payment-methods": ["422"],
    # Which OAuth clients exist and their redirect URIs is data: an unknown one is an error
    # page (400); a form without the CSRF token its page set is refused (403); a redirect
    # URI with plain http to a host other than loopback is 422.
    "GET /api/identity/authorize": ["400"],
    "POST /api/identity/authorize": ["400", "403"],
    "POST /api/identity/admin/clients": ["422"],
}
CONFIG = schemathesis.Config.from_dict({
    "operations": [{"include-name": name, "checks": {"positive_data_acceptance": {
        "expected-statuses": POSITIVE + extra}}} for name, extra in NOT_IN_THE_SCHEMA.items()],
    "generation": {"max-examples": EXAMPLES, "deterministic": not RANDOM,
                   # PostgreSQL text cannot hold NUL: any NUL gets 422 (documented on every
                   # route with input); the schemas do not repeat that on every string.
                   "allow-x00": False},
    # QUERY is a draft method Envoy's HTTP/1 parser does not know: 400 before any route.
    "phases": {"coverage": {"unexpected-methods": ["get", "put", "post", "delete", "options",
                                                  "patch", "trace"]}},
    "output": {"sanitization": {"enabled": False}},
})
TOKENS: dict[str, str] = {}


def _pending(role: str) -> str:
    return f"pending-{role}"


def service_spec(service: str) -> dict[str, Any]:
    return importlib.import_module(f"{service}.app").create_app().openapi()  # type: ignore[no-any-return]


def _schema(service: str, role: str) -> Any:
    schema = schemathesis.openapi.from_dict(service_spec(service), config=CONFIG)

    @schema.auth(refresh_interval=None)
    class Bearer:
        def get(self, case: Any, ctx: Any) -> str:
            # Explicit examples are generated at collection, before the platform is up.
            return TOKENS.get(role, _pending(role))

        def set(self, case: Any, data: str, ctx: Any) -> None:
            case.headers = {**(case.headers or {}), "Authorization": f"Bearer {data}"}

    return schema


SCHEMAS = {f"{service}-{role}": _schema(service, role) for service in SERVICES for role in ROLES}


class FromAddress(HTTPAdapter):
    """Connections from one loopback address (Linux routes all of 127.0.0.0/8 on lo)."""

    def __init__(self, address: str) -> None:
        self.address = address
        super().__init__()

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["source_address"] = (self.address, 0)
        super().init_poolmanager(*args, **kwargs)


def client_session() -> requests.Session:
    """A session of a client of its own: each test case (a request and the probes its checks
    send) or scenario is one, with its own buckets at the edge's per-client rate limits.
    As one client, the fuzzer would soon get 429 for everything on a limited route (which
    conforms: every operation documents it), and the checks that expect one answer to one
    request (401 without a token) would see a 429 instead."""
    s = requests.Session()
    s.mount("http://", FromAddress(new_client_address()))
    return s


@pytest.fixture(scope="module")
def fuzz_platform() -> Iterator[Platform]:
    with running_platform(scratch_home("mercato-fuzz-")) as platform:
        yield platform


@pytest.fixture(scope="module", autouse=True)
def probes_are_clients_of_their_own() -> Iterator[None]:
    """The checks' own probes (ignored_auth sends the request again without the token) go
    out on a fresh session of schemathesis', not the case's: give those an address of their
    own too, or they all come from 127.0.0.1 and meet its rate limits (429, not 401)."""
    base = schemathesis_requests.SameHostRedirectsSession

    class FromAFreshAddress(base):  # type: ignore[misc,valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.mount("http://", FromAddress(new_client_address()))

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(schemathesis_requests, "SameHostRedirectsSession", FromAFreshAddress)
        yield


@pytest.fixture(scope="module")
def tokens(fuzz_platform: Platform) -> dict[str, str]:
    """A customer (with an address) and an admin to fuzz as."""
    with fuzz_platform.client() as c:
        auth, _ = customer_with_address(fuzz_platform, c)
        TOKENS["customer"] = auth["Authorization"].removeprefix("Bearer ")
        TOKENS["admin"] = fuzz_platform.admin_token(c)
    return TOKENS


@pytest.mark.parametrize("service", SERVICES)
def test_the_edge_serves_each_document_publicly(fuzz_platform: Platform, service: str) -> None:
    """What is fuzzed is what the edge publishes, to anyone: no token needed."""
    with fuzz_platform.client() as c:
        served = c.get(f"{API_ROOTS[service]}/openapi.json")
        page = c.get(f"{API_ROOTS[service]}/docs")
    assert served.status_code == 200, served.text
    assert served.json() == service_spec(service)
    assert page.status_code == 200 and "SwaggerUIBundle" in page.text


@schemathesis.pytest.parametrize(**SCHEMAS)
@settings(deadline=None, suppress_health_check=list(HealthCheck), database=None)
def test_api(case: Any, tokens: dict[str, str], fuzz_platform: Platform) -> None:
    for role in ROLES:
        if (case.headers or {}).get("Authorization") == f"Bearer {_pending(role)}":
            case.headers["Authorization"] = f"Bearer {tokens[role]}"
    with client_session() as session:
        case.call_and_validate(base_url=fuzz_platform.base_url, session=session)


def _has_links(schema: Any) -> bool:
    return bool(schema.as_state_machine().bundles)


@pytest.mark.parametrize("name", sorted(n for n, s in SCHEMAS.items() if _has_links(s)))
def test_stateful(name: str, tokens: dict[str, str], fuzz_platform: Platform) -> None:
    """Sequences of calls along the links schemathesis infers (create a product, then read,
    change and delete it): use_after_free and ensure_resource_availability need them."""
    failures: list[Exception] = []

    class Workflow(SCHEMAS[name].as_state_machine()):  # type: ignore[misc]
        def setup(self) -> None:
            self.session = client_session()

        def teardown(self) -> None:
            self.session.close()

        def get_call_kwargs(self, case: Any) -> dict[str, Any]:
            return {"base_url": fuzz_platform.base_url, "session": self.session}

        def validate_response(self, response: Any, case: Any, **kwargs: Any) -> None:
            try:
                super().validate_response(response, case, **kwargs)
            except Exception as exc:
                failures.append(exc)
                raise

    try:
        Workflow.run(settings=settings(
            max_examples=SCENARIOS, stateful_step_count=6, deadline=None, database=None,
            derandomize=not RANDOM, phases=[Phase.explicit, Phase.reuse, Phase.generate],
            suppress_health_check=list(HealthCheck)))
    except FlakyStrategyDefinition:
        # The server keeps state (an address book fills up, a SKU is taken), so one choice of
        # rules can enable different ones on a later run, which Hypothesis calls flaky. Only
        # a failed check is a finding, and every one is recorded above.
        if failures:
            raise failures[0] from None
