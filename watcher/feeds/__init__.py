"""Ways of learning about releases (poll, npm changes, PyPI changelog, reconcile), all behind the
small protocol in `base`. Feeds never scan; they turn registry state into events."""
