"""The embedded store on one SQLite file: one module per table group, `migrations` for the
schema, `store.SqliteStore` composing them. The only package that speaks SQL."""
