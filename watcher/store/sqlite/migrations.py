"""The embedded store's schema: ordered migrations over `PRAGMA user_version`.

Entry N brings the schema from version N to N + 1. Never edit a shipped entry; append a new one
(a file written by an older watcher is brought up to date when it is opened; one written by a newer
watcher is refused).
"""

from __future__ import annotations

# Ordered migrations: entry N brings the schema from version N to N + 1 (`PRAGMA user_version`).
# Never edit a shipped entry; append a new one.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE feed_cursors (
            feed TEXT PRIMARY KEY,
            cursor TEXT NOT NULL,
            updated_at REAL NOT NULL
        ) WITHOUT ROWID""",
        """CREATE TABLE packages (
            ecosystem TEXT NOT NULL,
            name TEXT NOT NULL,
            versions TEXT NOT NULL,      -- JSON array of every version seen
            files TEXT NOT NULL,         -- JSON array of every artifact filename seen
            etag TEXT,
            generation INTEGER,          -- npm _rev prefix / PyPI last serial
            first_seen REAL NOT NULL,
            updated_at REAL NOT NULL,
            PRIMARY KEY (ecosystem, name)
        ) WITHOUT ROWID""",
        """CREATE TABLE releases (
            id INTEGER PRIMARY KEY,
            ecosystem TEXT NOT NULL,
            name TEXT NOT NULL,
            version TEXT NOT NULL,
            published_at REAL,
            artifacts TEXT NOT NULL,     -- JSON array of artifacts
            baseline INTEGER NOT NULL DEFAULT 0,  -- first sight: scanned, never paged
            feed TEXT,
            state TEXT NOT NULL DEFAULT 'pending'
                CHECK (state IN ('pending', 'scanning', 'scanned', 'failed')),
            attempts INTEGER NOT NULL DEFAULT 0,
            last_error TEXT,
            next_attempt_at REAL,
            rescan INTEGER NOT NULL DEFAULT 0,    -- files were added while it was being scanned
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL,
            scanned_at REAL,
            UNIQUE (ecosystem, name, version)
        )""",
        "CREATE INDEX releases_by_state ON releases (state, next_attempt_at)",
        "CREATE INDEX releases_by_package ON releases (ecosystem, name, state)",
        """CREATE TABLE manifests (
            release_id INTEGER PRIMARY KEY REFERENCES releases (id) ON DELETE CASCADE,
            files INTEGER NOT NULL,
            bytes INTEGER NOT NULL,
            data BLOB NOT NULL           -- zlib(JSON {files: {path: [size, sha256]}, fingerprints})
        )""",
        """CREATE TABLE findings (
            id INTEGER PRIMARY KEY,
            release_id INTEGER NOT NULL REFERENCES releases (id) ON DELETE CASCADE,
            rule TEXT NOT NULL,
            category TEXT NOT NULL,
            severity TEXT NOT NULL,
            path TEXT NOT NULL,
            line INTEGER,
            message TEXT NOT NULL,
            key TEXT NOT NULL,
            fingerprint TEXT NOT NULL,
            is_new INTEGER NOT NULL,
            severity_if_new TEXT,
            evidence TEXT NOT NULL
        )""",
        "CREATE INDEX findings_by_release ON findings (release_id)",
        """CREATE TABLE incidents (
            id INTEGER PRIMARY KEY,
            dedup_key TEXT NOT NULL UNIQUE,
            ecosystem TEXT NOT NULL,
            name TEXT NOT NULL,
            version TEXT NOT NULL,
            owner TEXT NOT NULL,
            release_id INTEGER REFERENCES releases (id),
            state TEXT NOT NULL CHECK (state IN ('open', 'resolved')),
            worst_severity TEXT NOT NULL,
            opened_at REAL NOT NULL,
            resolved_at REAL,
            resolution TEXT,
            payload TEXT NOT NULL
        )""",
        "CREATE INDEX incidents_by_state ON incidents (state)",
        # AUTOINCREMENT: ids are never reused, so per-channel order by id is delivery order.
        """CREATE TABLE outbox (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            incident_id INTEGER REFERENCES incidents (id),
            channel TEXT NOT NULL,
            event TEXT NOT NULL CHECK (event IN ('opened', 'resolved', 'update', 'test')),
            payload TEXT NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            next_attempt_at REAL NOT NULL,
            last_error TEXT,
            created_at REAL NOT NULL,
            state TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'dead')),
            dead_at REAL
        )""",
        "CREATE INDEX outbox_by_channel ON outbox (channel, state, id)",
        """CREATE TABLE removals (
            ecosystem TEXT NOT NULL,
            name TEXT NOT NULL,
            version TEXT NOT NULL,
            filename TEXT NOT NULL,      -- '' when the whole version went
            reason TEXT NOT NULL,        -- unpublished | yanked | removed
            removed_at REAL,
            seen_at REAL NOT NULL,
            feed TEXT,
            PRIMARY KEY (ecosystem, name, version, filename)
        ) WITHOUT ROWID""",
    ),
    # 2: versions already reported as yanked (PyPI), so a yank is an event once
    ("ALTER TABLE packages ADD COLUMN yanked TEXT NOT NULL DEFAULT '[]'",),
    # 3: what the containment watcher recorded per incident (a mitigation posted once, the
    # dist-tags first seen on the version), so a restart never posts an update twice
    (
        """CREATE TABLE incident_notes (
            incident_id INTEGER NOT NULL REFERENCES incidents (id),
            kind TEXT NOT NULL,
            detail TEXT NOT NULL,
            recorded_at REAL NOT NULL,
            PRIMARY KEY (incident_id, kind)
        ) WITHOUT ROWID""",
    ),
    # 4: channels whose endpoint said it is gone (a row while disabled), so the operator commands
    # and `watcher status` see them and an operator can re-enable one from another process
    (
        """CREATE TABLE disabled_channels (
            channel TEXT PRIMARY KEY,
            reason TEXT NOT NULL,
            disabled_at REAL NOT NULL,   -- first refusal of this outage
            recheck_at REAL NOT NULL     -- when the running outbox tries the channel again
        ) WITHOUT ROWID""",
    ),
    # 5: a claim names its holder and its lease, so several processes can share the queue and an
    # abandoned claim is taken over when its lease expires (NULL lease: held until requeued at
    # start); `leases`: named leases with an epoch that rises on each takeover (feed leader,
    # channel sender)
    (
        "ALTER TABLE releases ADD COLUMN claimed_by TEXT",
        "ALTER TABLE releases ADD COLUMN lease_expires_at REAL",
        """CREATE TABLE leases (
            name TEXT PRIMARY KEY,
            owner TEXT NOT NULL,
            epoch INTEGER NOT NULL,
            expires_at REAL NOT NULL
        ) WITHOUT ROWID""",
    ),
    # 6: the outbox holds deliveries of events, not incidents: each event of an incident is kept
    # once (`incident_events`: its stable id, type, message and the incident as it was then) and
    # the outbox has one delivery of it per channel with its attempt state. Queued pages of an
    # older file become events (one per distinct page, its id the first of its deliveries) and
    # deliveries that keep their ids, attempts and order; a page that was not JSON keeps its text
    # and is dead-lettered as unreadable when its turn comes, as before.
    (
        """CREATE TABLE incident_events (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            event_id TEXT NOT NULL,      -- stable: the receivers' idempotency key
            type TEXT NOT NULL,          -- incident.opened | incident.updated | incident.resolved
            incident_id INTEGER REFERENCES incidents (id),
            dedup_key TEXT,
            message TEXT,                -- what an update or a resolution says
            incident TEXT NOT NULL,      -- the incident as it was when the event happened (JSON)
            created_at REAL NOT NULL
        )""",
        "CREATE INDEX incident_events_by_incident ON incident_events (incident_id, id)",
        """INSERT INTO incident_events
            (id, event_id, type, incident_id, dedup_key, message, incident, created_at)
        SELECT MIN(o.id),
            CASE WHEN json_valid(o.payload)
                THEN coalesce(json_extract(o.payload, '$.event_id'), '') ELSE '' END,
            CASE WHEN json_valid(o.payload)
                THEN coalesce(json_extract(o.payload, '$.type'), '') ELSE '' END,
            (SELECT i.id FROM incidents AS i WHERE i.id = o.incident_id),
            CASE WHEN json_valid(o.payload)
                THEN json_extract(o.payload, '$.incident.dedup_key') END,
            CASE WHEN json_valid(o.payload) THEN json_extract(o.payload, '$.message') END,
            CASE WHEN json_valid(o.payload)
                THEN coalesce(json_extract(o.payload, '$.incident'), 'null') ELSE o.payload END,
            MIN(o.created_at)
        FROM outbox AS o GROUP BY o.incident_id, o.payload""",
        "ALTER TABLE outbox RENAME TO outbox_legacy",
        "DROP INDEX outbox_by_channel",
        """CREATE TABLE outbox (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            event INTEGER NOT NULL REFERENCES incident_events (id),
            channel TEXT NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            next_attempt_at REAL NOT NULL,
            last_error TEXT,
            created_at REAL NOT NULL,
            state TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'dead')),
            dead_at REAL
        )""",
        """INSERT INTO outbox
            (id, event, channel, attempts, next_attempt_at, last_error, created_at, state, dead_at)
        SELECT o.id,
            (SELECT MIN(p.id) FROM outbox_legacy AS p
                WHERE p.incident_id IS o.incident_id AND p.payload = o.payload),
            o.channel, o.attempts, o.next_attempt_at, o.last_error, o.created_at, o.state,
            o.dead_at
        FROM outbox_legacy AS o""",
        # ids are never reused: the new table goes on from the old one's last id
        "DELETE FROM sqlite_sequence WHERE name IN ('outbox', 'incident_events')",
        """INSERT INTO sqlite_sequence (name, seq)
        SELECT 'outbox', seq FROM sqlite_sequence WHERE name = 'outbox_legacy'""",
        """INSERT INTO sqlite_sequence (name, seq)
        SELECT 'incident_events', seq FROM sqlite_sequence WHERE name = 'outbox_legacy'""",
        "DROP TABLE outbox_legacy",
        "CREATE INDEX outbox_by_channel ON outbox (channel, state, id)",
    ),
    # 7: automatic containment jobs, durable like the outbox: one row per action and target of an
    # incident (done once), pending until its outcome is recorded.
    (
        """CREATE TABLE containment_jobs (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            incident_id INTEGER NOT NULL REFERENCES incidents (id),
            ecosystem TEXT NOT NULL,
            name TEXT NOT NULL,
            action TEXT NOT NULL,
            target TEXT NOT NULL,
            params TEXT NOT NULL,
            state TEXT NOT NULL DEFAULT 'pending'
                CHECK (state IN ('pending', 'done', 'failed', 'dry_run', 'skipped')),
            attempts INTEGER NOT NULL DEFAULT 0,
            next_attempt_at REAL NOT NULL,
            detail TEXT,
            created_at REAL NOT NULL,
            finished_at REAL,
            UNIQUE (incident_id, action, target)
        )""",
        "CREATE INDEX containment_jobs_due ON containment_jobs (state, next_attempt_at)",
        "CREATE INDEX containment_jobs_by_package ON containment_jobs (ecosystem, name, finished_at)",
    ),
    # approvals (issue 12): the team's gate passed this exact artifact, with who and when; and
    # origin checks, deferred until their grace ran out (the approval, the tag, late attestations).
    (
        """CREATE TABLE approvals (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            ecosystem TEXT NOT NULL,
            name TEXT NOT NULL,
            version TEXT NOT NULL,
            sha256 TEXT NOT NULL,
            integrity TEXT,
            report TEXT,
            token_name TEXT NOT NULL,
            created_at REAL NOT NULL,
            UNIQUE (ecosystem, name, version, sha256)
        )""",
        "CREATE INDEX approvals_by_time ON approvals (created_at)",
        """CREATE TABLE origin_checks (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            release_id INTEGER NOT NULL REFERENCES releases (id) ON DELETE CASCADE,
            kind TEXT NOT NULL,
            params TEXT NOT NULL,
            state TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'done')),
            due_at REAL NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            detail TEXT,
            claimed_by TEXT,
            lease_expires_at REAL,
            created_at REAL NOT NULL,
            finished_at REAL,
            UNIQUE (release_id, kind)
        )""",
        "CREATE INDEX origin_checks_due ON origin_checks (state, due_at)",
    ),
    # 9: messages a channel can edit later (Slack with a bot token): the `ts` of an incident's
    # first message, so updates are thread replies and the resolution edits it
    (
        """CREATE TABLE channel_messages (
            channel TEXT NOT NULL,          -- the outbox channel, `<owner>/slack`
            dedup_key TEXT NOT NULL,
            remote_channel TEXT NOT NULL,   -- Slack's channel id
            ref TEXT NOT NULL,              -- Slack's message ts
            created_at REAL NOT NULL,
            resolved_at REAL,
            PRIMARY KEY (channel, dedup_key)
        ) WITHOUT ROWID""",
    ),
)
SCHEMA_VERSION = len(MIGRATIONS)
