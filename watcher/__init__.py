"""registry-watcher: screens what npm and PyPI releases actually published, and pages the owners."""
