"""The approvals API on a real port over a real store: 401 without a valid token, 400 with a clear
message for a bad body, 201 with the stored approval and 200 with the same one on a retry, 403
outside a limited token's owners or packages (nothing recorded), the listing, the OpenAPI
document, and no token in any log line."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from structlog.testing import capture_logs

from watcher.config import parse_config
from watcher.config.schema import Config
from watcher.model import Ecosystem
from watcher.service.api import ApprovalsApi, api_app
from watcher.service.server import HttpServer
from watcher.store import open_store
from watcher.store.api import Store

pytestmark = pytest.mark.asyncio(loop_scope="session")

CONFIG = """
server:
  api_tokens:
    - {name: ci, token: "${CI_TOKEN}"}
    - {name: acme-only, token: "${ACME_TOKEN}", packages: ["@acme/*"]}
    - {name: web-team, token: "${WEB_TOKEN}", owners: [web]}
owners:
  platform: {console: true, expect: {approval: true}}
  web: {console: true}
packages:
  - {ecosystem: npm, name: "@acme/sdk", owner: platform}
  - {ecosystem: npm, name: left-pad, owner: web}
  - {ecosystem: pypi, name: Acme_Tool, owner: platform}
"""


def token() -> str:
    return "wt_" + secrets.token_hex(20)  # built at test time, never a committed value


@dataclass
class Api:
    url: str
    store: Store
    tokens: dict[str, str]
    config: Config

    async def call(
        self,
        method: str,
        bearer: str | None,
        *,
        json: Any = None,
        data: bytes | None = None,
        query: dict[str, str] | None = None,
    ) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {bearer}"} if bearer else {}
        async with (
            aiohttp.ClientSession() as session,
            session.request(
                method,
                self.url + "/api/v1/approvals",
                json=json,
                data=data,
                headers=headers,
                params=query,
            ) as response,
        ):
            return response.status, await response.json()


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    tokens = {"CI_TOKEN": token(), "ACME_TOKEN": token(), "WEB_TOKEN": token()}
    config = parse_config(CONFIG, source="t.yaml", env=tokens)
    store = await open_store(tmp_path / "state.db")
    server = HttpServer(api_app(ApprovalsApi(store, config)), "127.0.0.1", 0)
    await server.start()
    try:
        yield Api(f"http://127.0.0.1:{server.port}", store, tokens, config)
    finally:
        await server.stop()
        await store.close()


def body(**changes: Any) -> dict[str, Any]:
    tarball = b"the bytes npm pack wrote"
    base: dict[str, Any] = {
        "ecosystem": "npm",
        "name": "@acme/sdk",
        "version": "1.4.0",
        "sha256": hashlib.sha256(tarball).hexdigest(),
        "integrity": "sha512-" + "A" * 86 + "==",
        "report": {"worst": None, "findings": []},
    }
    base.update(changes)
    return {k: v for k, v in base.items() if v is not None}


async def test_an_approval_is_recorded_and_a_retry_returns_the_same_one(api: Api) -> None:
    status, created = await api.call("POST", api.tokens["CI_TOKEN"], json=body())
    assert status == 201
    assert set(created) == {
        "id",
        "ecosystem",
        "name",
        "version",
        "sha256",
        "integrity",
        "token_name",
        "created_at",
    }
    assert (created["name"], created["version"], created["token_name"]) == (
        "@acme/sdk",
        "1.4.0",
        "ci",
    )
    assert created["created_at"].endswith("Z")
    status, again = await api.call("POST", api.tokens["CI_TOKEN"], json=body())
    assert (status, again) == (200, created)
    status, listed = await api.call("GET", api.tokens["CI_TOKEN"], query={"name": "@acme/sdk"})
    assert (status, listed) == (200, [created])
    [stored] = await api.store.approvals(Ecosystem.NPM, "@acme/sdk", "1.4.0")
    assert stored.report == {"worst": None, "findings": []}  # kept, not echoed


async def test_pypi_names_are_stored_normalised_one_approval_per_file(api: Api) -> None:
    for digest in ("1" * 64, "2" * 64):  # a wheel and an sdist
        status, _ = await api.call(
            "POST",
            api.tokens["CI_TOKEN"],
            json=body(ecosystem="pypi", name="Acme_Tool", sha256=digest, integrity=None),
        )
        assert status == 201
    status, listed = await api.call(
        "GET",
        api.tokens["CI_TOKEN"],
        query={"name": "acme.tool", "ecosystem": "pypi"},
    )
    assert status == 200 and [a["name"] for a in listed] == ["acme-tool", "acme-tool"]


@pytest.mark.parametrize("bearer", [None, "wrong-token-value-0123456789", ""])
async def test_without_a_valid_token_it_is_401_and_nothing_is_recorded(
    api: Api, bearer: str | None
) -> None:
    with capture_logs() as logs:
        status, answer = await api.call("POST", bearer, json=body())
        get_status, _ = await api.call("GET", bearer, query={"name": "@acme/sdk"})
    assert (status, get_status) == (401, 401) and "API token" in answer["error"]
    assert await api.store.approvals(Ecosystem.NPM, "@acme/sdk") == []
    assert [e["event"] for e in logs] == ["api_unauthorized", "api_unauthorized"]
    assert bearer is None or not bearer or bearer not in repr(logs)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"sha256": "abc"}, "sha256: expected the artifact's SHA-256 as 64 hex digits"),
        ({"ecosystem": "maven"}, "ecosystem: expected one of"),
        ({"name": "@acme/*"}, "name:"),
        ({"version": ""}, "version: expected"),
        ({"integrity": "md5-xyz"}, "integrity: expected a Subresource Integrity value"),
        ({"report": [1]}, "report: expected"),
        ({"sha": "x"}, "unknown field(s) sha"),
        ({"version": None}, "missing field(s): version"),
    ],
)
async def test_a_bad_body_is_400_with_a_clear_message(
    api: Api, changes: dict[str, Any], message: str
) -> None:
    status, answer = await api.call("POST", api.tokens["CI_TOKEN"], json=body(**changes))
    assert status == 400 and message in answer["error"]
    assert await api.store.approvals(Ecosystem.NPM, "@acme/sdk") == []


async def test_a_body_that_is_not_json_is_400(api: Api) -> None:
    status, answer = await api.call("POST", api.tokens["CI_TOKEN"], data=b"{not json")
    assert status == 400 and answer["error"].startswith("expected a JSON body")


async def test_a_limited_token_gets_403_outside_its_packages_and_owners(api: Api) -> None:
    with capture_logs() as logs:
        status, answer = await api.call(
            "POST", api.tokens["ACME_TOKEN"], json=body(name="left-pad")
        )
        assert status == 403 and "limited to packages @acme/*" in answer["error"]
        status, answer = await api.call("POST", api.tokens["WEB_TOKEN"], json=body())
        assert status == 403 and "limited to owners web" in answer["error"]
        assert "owned by platform" in answer["error"]
        status, _ = await api.call(
            "GET", api.tokens["WEB_TOKEN"], query={"name": "@acme/sdk", "ecosystem": "npm"}
        )
        assert status == 403
    assert await api.store.approvals(Ecosystem.NPM, "left-pad") == []
    assert await api.store.approvals(Ecosystem.NPM, "@acme/sdk") == []
    assert not any(t in repr(logs) for t in api.tokens.values())
    # inside its limits it records
    status, created = await api.call("POST", api.tokens["WEB_TOKEN"], json=body(name="left-pad"))
    assert status == 201 and created["token_name"] == "web-team"


async def test_the_listing_needs_a_name(api: Api) -> None:
    status, answer = await api.call("GET", api.tokens["CI_TOKEN"])
    assert status == 400 and "name" in answer["error"]


async def test_the_openapi_document_is_served_without_a_token(api: Api) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.get(api.url + "/api/v1/openapi.json") as response,
    ):
        assert response.status == 200
        document = await response.json()
    assert document["openapi"].startswith("3.")
    post = document["paths"]["/api/v1/approvals"]["post"]
    assert {"200", "201", "400", "401", "403"} <= set(post["responses"])
    assert document["components"]["schemas"]["Approval"]["required"] == [
        "id",
        "ecosystem",
        "name",
        "version",
        "sha256",
        "integrity",
        "token_name",
        "created_at",
    ]


async def test_tokens_are_validated_and_hidden() -> None:
    from watcher.errors import ConfigError  # noqa: PLC0415

    weak = "short"
    with pytest.raises(ConfigError) as info:
        parse_config(
            CONFIG,
            source="t.yaml",
            env={"CI_TOKEN": weak, "ACME_TOKEN": token(), "WEB_TOKEN": token()},
        )
    assert "server.api_tokens[0].token" in str(info.value) and weak not in str(info.value)
    same = token()
    with pytest.raises(ConfigError) as info:
        parse_config(
            CONFIG,
            source="t.yaml",
            env={"CI_TOKEN": same, "ACME_TOKEN": same, "WEB_TOKEN": token()},
        )
    assert "same token" in str(info.value) and same not in str(info.value)
    bad_owner = CONFIG.replace("owners: [web]", "owners: [nobody]")
    with pytest.raises(ConfigError) as info:
        parse_config(
            bad_owner,
            source="t.yaml",
            env={"CI_TOKEN": token(), "ACME_TOKEN": token(), "WEB_TOKEN": token()},
        )
    assert "server.api_tokens[2].owners: unknown owner 'nobody'" in str(info.value)


async def test_the_plan_names_the_tokens_never_their_values() -> None:
    from watcher.config import describe_plan  # noqa: PLC0415

    tokens = {"CI_TOKEN": token(), "ACME_TOKEN": token(), "WEB_TOKEN": token()}
    plan = describe_plan(parse_config(CONFIG, source="t.yaml", env=tokens))
    assert "approvals API: http://127.0.0.1:9464/api/v1/approvals" in plan
    assert "- acme-only: packages @acme/*" in plan and "- web-team: owners web" in plan
    assert not any(value in plan for value in tokens.values())


async def test_a_limited_token_listing_without_an_ecosystem_is_403_too(api: Api) -> None:
    status, answer = await api.call("GET", api.tokens["ACME_TOKEN"], query={"name": "left-pad"})
    assert status == 403 and "limited to packages" in answer["error"]


async def test_the_api_can_share_the_metrics_port(tmp_path: Path) -> None:
    """Without server.api_listen the routes sit beside /metrics on the one port."""
    from watcher.service.server import Readiness, build_app  # noqa: PLC0415

    tokens = {"CI_TOKEN": token(), "ACME_TOKEN": token(), "WEB_TOKEN": token()}
    config = parse_config(CONFIG, source="t.yaml", env=tokens)
    async with await open_store(tmp_path / "state.db") as store:
        api = ApprovalsApi(store, config)
        app = build_app(lambda: Readiness(True), extra=api.install, client_max_size=4 << 20)
        server = HttpServer(app, "127.0.0.1", 0)
        await server.start()
        try:
            shared = Api(f"http://127.0.0.1:{server.port}", store, tokens, config)
            status, created = await shared.call("POST", tokens["CI_TOKEN"], json=body())
            assert status == 201 and created["token_name"] == "ci"
            async with (
                aiohttp.ClientSession() as session,
                session.get(shared.url + "/healthz") as response,
            ):
                assert response.status == 200
        finally:
            await server.stop()


async def test_answers_match_the_openapi_document(api: Api) -> None:
    """The document is not prose: the bodies the API takes and gives validate against its
    schemas (JSON Schema 2020-12, as OpenAPI 3.1 uses)."""
    import jsonschema  # noqa: PLC0415

    async with (
        aiohttp.ClientSession() as session,
        session.get(api.url + "/api/v1/openapi.json") as response,
    ):
        schemas = (await response.json())["components"]["schemas"]
    validator = jsonschema.Draft202012Validator
    validator(schemas["NewApproval"]).validate(body())
    status, created = await api.call("POST", api.tokens["CI_TOKEN"], json=body())
    assert status == 201
    validator(schemas["Approval"]).validate(created)
    _, listed = await api.call("GET", api.tokens["CI_TOKEN"], query={"name": "@acme/sdk"})
    validator({"type": "array", "items": schemas["Approval"]}).validate(listed)
    for bearer, payload in ((None, body()), (api.tokens["CI_TOKEN"], body(sha256="x"))):
        _, error = await api.call("POST", bearer, json=payload)
        validator(schemas["Error"]).validate(error)
    bad = body(sha256="x")
    assert not validator(schemas["NewApproval"]).is_valid(bad)  # the schema refuses it too


async def test_a_token_written_into_the_file_is_refused() -> None:
    from watcher.errors import ConfigError  # noqa: PLC0415

    literal = token()
    text = CONFIG.replace('"${CI_TOKEN}"', f'"{literal}"')
    with pytest.raises(ConfigError) as info:
        parse_config(text, source="t.yaml", env={"ACME_TOKEN": token(), "WEB_TOKEN": token()})
    assert "server.api_tokens[0].token: expected the token from the environment" in str(info.value)
    assert literal not in str(info.value)
