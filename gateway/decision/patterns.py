"""Why: prompt rules are regular expressions written by admins and run on text written by clients.
A backtracking engine (Python's `re`) can take quadratic or exponential time on a crafted or merely
long prompt — the shipped `minors_sexual` rule took 2.1 s on 16,000 characters of one word and froze
the replica with it (issue #15.1). Rule regexes therefore run on RE2 (`google-re2`), whose time is
linear in the text whatever the pattern; patterns RE2 cannot run are refused when the policy loads
(`gateway.policy.schema.TermRule`). Compiled patterns are cached: a policy's rules are few."""

from __future__ import annotations

import functools
from typing import Any

import re2

__all__ = ["rule_regex"]


@functools.lru_cache(maxsize=1024)
def rule_regex(pattern: str) -> Any:
    """`pattern` compiled by RE2, case-insensitive (as rules have always matched)."""
    options = re2.Options()
    options.case_sensitive = False
    return re2.compile(pattern, options)
