"""Why: one error for everything that stops a policy bundle (or the routes file) from going live, so
the manager can refuse it and keep the last good one, and the CLI can print every problem at once.

    PolicyError          `errors`: `file:line: field.path: message` strings
    └── RoutesError      (gateway.upstream.routes) the routes file of a bundle
"""

from __future__ import annotations

__all__ = ["PolicyError"]


class PolicyError(Exception):
    """A policy bundle that cannot go live. `errors` are `file:line: field.path: message` strings."""

    def __init__(self, errors: list[str]):
        super().__init__("\n".join(errors))
        self.errors = errors
