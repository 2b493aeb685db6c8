"""Registry clients: one HTTP layer (`http`), one module per ecosystem, version ordering and the
machine's own registry settings."""
