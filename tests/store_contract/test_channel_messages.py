"""Messages a channel can edit later: the first one per incident is kept, never replaced."""

from __future__ import annotations

from tests.store_contract.builders import T0
from tests.store_contract.conftest import OpenState
from watcher.store.api import Store

KEY = "watcher/npm/@acme/cli/1.0.1"


async def test_the_first_message_of_an_incident_is_kept_once(store: Store) -> None:
    assert await store.channel_message("team/slack", KEY) is None
    assert await store.record_channel_message("team/slack", KEY, "C1", "1.000100", now=T0)
    # a second post after a crash would be a duplicate: the first reference stays
    assert not await store.record_channel_message("team/slack", KEY, "C1", "2.000200", now=T0 + 1)
    kept = await store.channel_message("team/slack", KEY)
    assert kept is not None and (kept.remote_channel, kept.ref) == ("C1", "1.000100")
    assert kept.created_at == T0 and kept.resolved_at is None
    # per channel: another owner's Slack keeps its own
    assert await store.channel_message("other/slack", KEY) is None
    await store.mark_channel_message_resolved("team/slack", KEY, now=T0 + 5)
    resolved = await store.channel_message("team/slack", KEY)
    assert resolved is not None and resolved.resolved_at == T0 + 5


async def test_kept_messages_survive_a_reopen(open_state: OpenState) -> None:
    first = await open_state()
    try:
        await first.record_channel_message("team/slack", KEY, "C1", "1.5", now=T0)
    finally:
        await first.close()
    second = await open_state()
    try:
        kept = await second.channel_message("team/slack", KEY)
        assert kept is not None and kept.ref == "1.5"
    finally:
        await second.close()
