"""Approvals: one per artifact, a repeat returns the stored one, listed per package and version,
the last ones newest first, kept across a reopen."""

from __future__ import annotations

from tests.store_contract.builders import T0
from tests.store_contract.conftest import OpenState
from watcher.model import Ecosystem
from watcher.store.api import Store
from watcher.store.types import NewApproval

NPM, PYPI = Ecosystem.NPM, Ecosystem.PYPI


def approval(version: str = "1.0.1", digest: str = "a", **kw: object) -> NewApproval:
    fields: dict[str, object] = {
        "ecosystem": NPM,
        "name": "@acme/cli",
        "version": version,
        "sha256": digest * 64,
        "token_name": "ci",
        "integrity": "sha512-" + digest * 86 + "==",
    }
    fields.update(kw)
    return NewApproval(**fields)  # type: ignore[arg-type]


async def test_an_approval_is_stored_once_per_artifact(store: Store) -> None:
    first, created = await store.add_approval(approval(report={"worst": None}), now=T0)
    assert created and first.id > 0
    assert (first.ecosystem, first.name, first.version) == (NPM, "@acme/cli", "1.0.1")
    assert (first.sha256, first.token_name, first.created_at) == ("a" * 64, "ci", T0)
    assert first.integrity == "sha512-" + "a" * 86 + "==" and first.report == {"worst": None}
    again, created_again = await store.add_approval(
        approval(token_name="other", sha256="A" * 64), now=T0 + 5
    )
    assert not created_again and again == first  # a CI retry: the stored one, unchanged
    other, created_other = await store.add_approval(approval(digest="b"), now=T0 + 6)
    assert created_other and other.id != first.id and other.integrity is not None


async def test_approvals_are_listed_per_package_and_version(store: Store) -> None:
    await store.add_approval(approval("1.0.0"), now=T0)
    await store.add_approval(approval("1.0.1", "b"), now=T0 + 1)
    await store.add_approval(approval("1.0.1", "c", integrity=None), now=T0 + 2)
    await store.add_approval(
        approval("1.0.1", ecosystem=PYPI, name="acme-cli", integrity=None), now=T0 + 3
    )
    assert [a.version for a in await store.approvals(NPM, "@acme/cli")] == [
        "1.0.0",
        "1.0.1",
        "1.0.1",
    ]
    assert [a.sha256[0] for a in await store.approvals(NPM, "@acme/cli", "1.0.1")] == ["b", "c"]
    assert [a.ecosystem for a in await store.approvals(PYPI, "acme-cli")] == [PYPI]
    assert await store.approvals(NPM, "@acme/other") == []
    recent = await store.recent_approvals(limit=2)
    assert [(a.ecosystem, a.sha256[0]) for a in recent] == [(PYPI, "a"), (NPM, "c")]


async def test_approvals_survive_a_reopen(open_state: OpenState) -> None:
    first = await open_state()
    try:
        stored, _ = await first.add_approval(approval(), now=T0)
    finally:
        await first.close()
    second = await open_state()
    try:
        assert await second.approvals(NPM, "@acme/cli", "1.0.1") == [stored]
        _, created = await second.add_approval(approval(), now=T0 + 1)
        assert not created
    finally:
        await second.close()
