"""What the owner says is private: fingerprint indexes of private source trees (`index`, `build`,
`match`), canaries planted in private places (`canaries`). Depends on the standard library and
`watcher.errors` only, so the scanner, the CLI and the configuration can all use it."""
