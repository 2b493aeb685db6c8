"""Alert channels: one module per channel behind the protocol in `base`, built from an owner's
configuration by `build_channels`."""

from __future__ import annotations

import aiohttp

from watcher.alerts.base import Channel, DeliveryResult, Outcome
from watcher.alerts.console import ConsoleChannel
from watcher.alerts.pagerduty import PagerDutyChannel
from watcher.alerts.slack import SlackChannel
from watcher.alerts.slack_bot import SlackBotChannel
from watcher.alerts.webhook import WebhookChannel
from watcher.config import OwnerConfig, channel_id
from watcher.store.api import ChannelMessageStore

__all__ = [
    "Channel",
    "ConsoleChannel",
    "DeliveryResult",
    "Outcome",
    "PagerDutyChannel",
    "SlackBotChannel",
    "SlackChannel",
    "WebhookChannel",
    "build_channels",
]


def build_channels(
    owner_name: str,
    owner: OwnerConfig,
    session: aiohttp.ClientSession | None = None,
    messages: ChannelMessageStore | None = None,
) -> list[Channel]:
    """The owner's channels, named `<owner>/<kind>` as the outbox keys them. With `session` the
    HTTP channels share it (the caller closes it); without, each owns one (`close()` it).
    `messages` is where Slack with a bot token keeps its messages' `ts` (the store)."""
    channels: list[Channel] = []
    if owner.pagerduty is not None:
        channels.append(
            PagerDutyChannel(
                channel_id(owner_name, "pagerduty"),
                owner.pagerduty.routing_key.get_secret_value(),
                url=owner.pagerduty.url,
                session=session,
            )
        )
    if owner.slack is not None and owner.slack.bot_token is not None:
        channels.append(
            SlackBotChannel(
                channel_id(owner_name, "slack"),
                owner.slack.bot_token.get_secret_value(),
                owner.slack.channel or "",
                messages,
                api_url=owner.slack.api_url,
                session=session,
            )
        )
    elif owner.slack is not None and owner.slack.webhook_url is not None:
        channels.append(
            SlackChannel(
                channel_id(owner_name, "slack"),
                owner.slack.webhook_url.get_secret_value(),
                session=session,
            )
        )
    if owner.webhook is not None:
        channels.append(
            WebhookChannel(
                channel_id(owner_name, "webhook"),
                owner.webhook.url,
                owner.webhook.secret.get_secret_value(),
                session=session,
                timeout=owner.webhook.timeout,
            )
        )
    if owner.console:
        channels.append(ConsoleChannel(channel_id(owner_name, "console")))
    return channels
