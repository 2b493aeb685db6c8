"""A third ecosystem that exists only in the tests: proof that adding a registry is one unit plus
its registration (nothing under `watcher/` names it)."""
