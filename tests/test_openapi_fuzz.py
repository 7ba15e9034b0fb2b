"""docs/openapi.yaml against a real Home Assistant + mosquitto, with schemathesis.

schemathesis generates requests from the OpenAPI file (at most ``EXAMPLES`` per
operation, schema-valid ones and, for the POST bodies, schema-invalid ones); each is
sent through ``hass_client`` and its response checked by schemathesis (no 5xx, a
documented status, content type and body). A schema-valid request must not get 400: the
file states every rule the server enforces. After each subscribe that worked, the same
topic and app are read back (the subscribe -> getsubscribedata link).
"""

from __future__ import annotations

import json
from pathlib import Path
import random
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote_plus

from hypothesis import HealthCheck, Phase, given, settings, strategies as st
import pytest
import requests
import schemathesis
from schemathesis.core import NOT_SET
from schemathesis.core.transport import Response
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import ignored_auth, negative_data_rejection

from custom_components.cloudsync.const import CONF_APP_ISOLATION, CONF_TOPIC_SENSORS
from tests.common import entry_for, setup_entry

if TYPE_CHECKING:
    from aiohttp.test_utils import TestClient
    from homeassistant.core import HomeAssistant
    from schemathesis.generation.case import Case

    from tests.mosquitto import Mosquitto

OPENAPI = Path(__file__).parent.parent / "docs" / "openapi.yaml"
BASE = "/api/v1/orchestration/cloudsyncmgr"
EXAMPLES = 40

# What the patterns of Topic and TopicFilter allow, drawn directly: generating from
# those regexes (large Unicode classes inside repeated groups) takes minutes. The
# patterns still filter what these produce.
_LEVEL = st.text(
    st.characters(
        blacklist_categories=("Cc", "Cs", "Cn"),
        blacklist_characters="+#/",
        max_codepoint=0xFFFD,
    ),
    max_size=6,
)
_TOPIC = st.lists(_LEVEL, min_size=1, max_size=4).map("/".join).filter(bool)
_FILTER = st.builds(
    lambda levels, tail: "/".join([*levels, *tail]),
    st.lists(st.one_of(_LEVEL, st.just("+")), max_size=4),
    st.sampled_from([[], ["#"]]),
).filter(bool)
schemathesis.openapi.format("mqtt-topic", _TOPIC)
schemathesis.openapi.format("mqtt-topic-filter", _FILTER)


def _cases(operation: Any, mode: GenerationMode) -> list[Case]:
    """Draw up to EXAMPLES cases of one operation (no shrinking, no database)."""
    cases: list[Case] = []

    @settings(
        max_examples=EXAMPLES,
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(operation.as_strategy(generation_mode=mode))
    def collect(case: Case) -> None:
        cases.append(case)

    collect()
    return cases


def _path(case: Case) -> str | None:
    """Return the request path, each parameter percent-encoded (None: unsendable).

    schemathesis encodes path values with ``quote_plus``, a space as ``+``; in a path
    ``+`` is a plus, so each value is decoded that way and encoded for a path again.
    """
    params = {
        name: unquote_plus(str(value))
        for name, value in (case.path_parameters or {}).items()
    }
    if any(value in (".", "..") for value in params.values()):
        return None  # resolved as a path step by every HTTP stack (documented)
    return BASE + case.path.format(
        **{name: quote(value, safe="") for name, value in params.items()}
    )


def _steer(case: Case, broker: Mosquitto, rng: random.Random) -> None:
    """Point half the bodies and host paths at the real broker, to get past 404."""
    if rng.random() < 0.5:
        return
    if isinstance(case.body, dict) and "url" in case.body:
        case.body["url"] = broker.url
    if case.path_parameters and "host" in case.path_parameters:
        case.path_parameters["host"] = f"{broker.host}:{broker.port}"


async def _send(client: TestClient, case: Case, path: str) -> Response:
    """Send a case through HA's test client; wrap the reply for schemathesis."""
    body = None if case.body in (None, NOT_SET) else schemathesis_json(case.body)
    reply = await client.request(
        case.method,
        path,
        data=body,
        headers={"Content-Type": "text/plain"} if body is not None else None,
    )
    content = await reply.read()
    prepared = requests.Request(
        case.method, f"http://127.0.0.1{path}", data=body
    ).prepare()
    headers: dict[str, list[str]] = {}
    for name, value in reply.headers.items():
        headers.setdefault(name, []).append(value)
    return Response(reply.status, headers, content, prepared, 0.0, verify=True)


def schemathesis_json(body: Any) -> bytes:
    """Serialize a generated body as the seed's clients do (JSON, any Content-Type)."""
    if isinstance(body, bytes):
        return body
    return json.dumps(body).encode()


@pytest.mark.timeout(240)  # hundreds of generated requests; slow on a loaded machine
async def test_openapi_contract(
    hass: HomeAssistant, hass_client: Any, plain_broker: Mosquitto
) -> None:
    """Generated requests: no 5xx, documented replies, no 400 for valid ones."""
    await setup_entry(
        hass,
        entry_for(
            plain_broker,
            options={CONF_APP_ISOLATION: True, CONF_TOPIC_SENSORS: False},
        ),
    )
    client = await hass_client()
    schema = schemathesis.openapi.from_path(OPENAPI)
    rng = random.Random(11)
    sent = failures = 0
    problems: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()
        modes = [GenerationMode.POSITIVE]
        if operation.method.upper() == "POST":
            modes.append(GenerationMode.NEGATIVE)
        for mode in modes:
            for case in _cases(operation, mode):
                _steer(case, plain_broker, rng)
                if (path := _path(case)) is None:
                    continue
                response = await _send(client, case, path)
                sent += 1
                problem = _check(case, response, mode)
                if (
                    problem is None
                    and response.status_code == 200
                    and (operation.path == "/subscribe")
                ):
                    problem = await _read_back(client, case, operation, schema)
                if problem is not None:
                    failures += 1
                    problems.append(problem)
    assert sent >= 300, sent
    assert not problems, f"{failures} of {sent} requests:\n" + "\n".join(problems[:10])


def _check(case: Case, response: Response, mode: GenerationMode) -> str | None:
    """Return what is wrong with a response, or None."""
    where = f"{case.method} {_path(case)} {case.body!r:.200} -> {response.status_code}"
    if response.status_code >= 500:
        return f"server error: {where} {response.content[:200]!r}"
    if mode is GenerationMode.POSITIVE and response.status_code == 400:
        return f"schema-valid request refused: {where} {response.content[:300]!r}"
    try:
        # Auth is its own test (test_isolation.py); ignored_auth would resend the
        # request through `requests`, which cannot reach HA's test server. A batch
        # answers 200 with a refused status for a message that breaks its schema.
        excluded = [ignored_auth]
        if case.operation.path == "/publish/batch":
            excluded.append(negative_data_rejection)
        case.validate_response(response, excluded_checks=excluded)
    except AssertionError as err:
        return f"{where}: {str(err)[:400]}"
    return None


async def _read_back(
    client: TestClient, case: Case, operation: Any, schema: Any
) -> str | None:
    """Follow subscribe -> getsubscribedata with the same topic and app."""
    body = case.body
    get = schema["/getsubscribedata/{topic}/{appid}"]["GET"]
    follow = get.Case(
        path_parameters={
            "topic": quote(body["topic"], safe=""),
            "appid": quote(body["appid"], safe=""),
        }
    )
    if (path := _path(follow)) is None:
        return None
    response = await _send(client, follow, path)
    if response.status_code != 200:
        return f"read back after {operation.path} {body!r}: {response.status_code}"
    return _check(follow, response, GenerationMode.POSITIVE)


pytestmark = pytest.mark.usefixtures("socket_enabled")
