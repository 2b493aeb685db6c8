"""`python -m watcher.cli`: the same entry point as the `watcher` script."""

import sys

from watcher.cli.main import main

sys.exit(main())
