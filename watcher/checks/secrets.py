"""`secret`: placeholder until the rule set lands."""

from watcher.checks.base import Check
from watcher.model import Category


class SecretCheck(Check):
    category = Category.SECRET
