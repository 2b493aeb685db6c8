"""Whether automatic containment (`containment.auto`) acts on an incident, and how long its
opening page waits for the outcome.

One answer for both who ask: the incident lifecycle holds a new incident's opening page for at
most `OPENING_HOLD` seconds when automatic containment will act on it (so the page can say what
was done), and the automatic containment planner records why it does nothing otherwise.
"""

from __future__ import annotations

from watcher.config.schema import Config
from watcher.model import Incident

OPENING_HOLD = 5.0  # the opening page waits at most this long for the actions' outcome


def not_eligible(config: Config, incident: Incident, now: float) -> str | None:
    """Why automatic containment does nothing for `incident` (None: it acts)."""
    auto = config.containment.auto
    if auto is None or not config.containment.enabled:
        return "automatic containment is not configured"
    if incident.test:
        return "a test incident: nothing to contain"
    if incident.worst().rank < auto.at.rank:
        return f"below containment.auto.at ({auto.at.value}): no automatic action"
    packages = [p for p in config.packages_for(incident.ecosystem) if p.matches(incident.name)]
    packages.sort(key=lambda p: (p.is_pattern, -len(p.name)))
    if packages and not packages[0].auto_contain:
        return "auto_contain: false for this package: no automatic action"
    published = incident.published_at
    if published is not None:
        age = now - published.timestamp()
        if age > auto.within:
            return (
                f"published {age / 3600:.1f} h ago, older than containment.auto.within: "
                "no automatic action"
            )
    return None


def opening_hold(config: Config, incident: Incident, now: float) -> float | None:
    """Until when the opening page of a new incident waits for automatic containment."""
    return None if not_eligible(config, incident, now) is not None else now + OPENING_HOLD
