"""Errors of the conductor client, and the map from zome errors to the package's typed errors.

A conductor answers a failed request with ``{type: "error", value: {type:
<kind>, value: <text>}}``. Three kinds of failure matter to callers:

- the conductor cannot be reached (:class:`ConductorUnavailable`; the message
  names the URL), or does not answer in time (:class:`ConductorTimeout`);
- the conductor refuses the request itself: a bad signature, a capability
  that does not cover the call, another agent's cell
  (:class:`CallRefused`);
- the zome refuses it: a rule of the integrity zome, or a guest error of the
  coordinator (:class:`ZomeCallError`). A broken submission rule becomes
  :class:`~zerotrustml.exceptions.SubmissionRejected` with the same
  ``field``, ``code`` and message as the embedded store reports, because the
  integrity zome's messages carry them (``GradientSubmission.<field>:
  <reason> [<code>]``).

All of them are :class:`~zerotrustml.backends.base.StoreError`\\ s, so code that
handles a failing store handles a failing conductor.
"""

from __future__ import annotations

import re
from typing import Any

from zerotrustml.backends.base import StoreError
from zerotrustml.exceptions import SubmissionRejected

__all__ = [
    "ConductorError",
    "ConductorUnavailable",
    "ConductorTimeout",
    "CallRefused",
    "ZomeCallError",
    "rejection_from",
]


class ConductorError(StoreError):
    """A conductor request failed; the message names the conductor's URL and the reason."""


class ConductorUnavailable(ConductorError):
    """The conductor cannot be reached (not running, restarting, refused the connection)."""


class ConductorTimeout(ConductorError):
    """The conductor did not answer within the request's timeout."""


class CallRefused(ConductorError):
    """The conductor refused a zome call before running it: bad signature, no capability, unknown cell."""


class ZomeCallError(ConductorError):
    """The zome ran and returned an error (a validation rule or a guest error).

    ``fn_name`` is the zome function, ``reason`` the zome's own message
    (with the conductor's wrapping removed).
    """

    def __init__(self, message: str, *, fn_name: str, reason: str) -> None:
        super().__init__(message)
        self.fn_name = fn_name
        self.reason = reason


# Entry types whose validation messages start with "<Entry>.<field>: ".
_ENTRY_TYPES = (
    "GradientSubmission",
    "GradientChunk",
    "CommitteeVote",
    "RoundAggregate",
    "ReputationRecord",
    "NodeRegistration",
)
_RULE = re.compile(r"(?P<entry>" + "|".join(_ENTRY_TYPES) + r")\.(?P<field>[a-z_][a-z_0-9.\[\]]*): ")
_CODE = re.compile(r" \[(?P<code>[a-z_]+)\]")
# The conductor wraps guest errors in layers of Debug formatting; these are the parts to peel.
_GUEST = re.compile(r'Guest\("(?P<msg>(?:[^"\\]|\\.)*)"\)', re.DOTALL)


def _unescape(text: str) -> str:
    # Rust's Debug escaping of the inner string, one or more levels deep.
    while '\\"' in text or "\\\\" in text:
        text = text.replace('\\"', '"').replace("\\\\", "\\")
    return text


def _rule_text(text: str) -> tuple[re.Match[str], str, str | None] | None:
    """The first ``Entry.field: reason [code]`` in ``text``: the match, the reason and the code."""
    m = _RULE.search(text)
    if m is None:
        return None
    rest = text[m.end() :]
    c = _CODE.search(rest)
    if c is not None:
        return m, rest[: c.start()], c.group("code")
    # No code: the reason runs to the end of the message's line.
    return m, (rest.splitlines()[0] if rest else rest).rstrip(), None


def zome_reason(error_text: str) -> str:
    """The zome's own message inside the conductor's error text (the whole text when no wrapper is recognised)."""
    # A guest error comes wrapped in Debug formatting (`Guest("...")`); a validation failure comes as
    # "... Validation failed while committing: <message>" at the end of the text.
    g = _GUEST.search(error_text)
    text = _unescape(g.group("msg")) if g else error_text
    found = _rule_text(text)
    if found is not None:
        m, reason, code = found
        return f"{m.group(0)}{reason}" + (f" [{code}]" if code else "")
    return text


def rejection_from(reason: str) -> SubmissionRejected | None:
    """A ``SubmissionRejected`` for a broken ``GradientSubmission`` rule, as the embedded store raises it.

    ``reason`` is the zome's message (see :func:`zome_reason`). Returns
    ``None`` for any other error. The message drops the entry type and the
    code suffix, so it reads exactly as the core's rule says it.
    """
    found = _rule_text(_unescape(reason))
    if found is None or found[0].group("entry") != "GradientSubmission":
        return None
    m, text, code = found
    field = m.group("field")
    err = SubmissionRejected(f"{field}: {text}")
    err.field = field
    err.code = code or "invalid"
    return err


def describe_error(value: Any) -> tuple[str, str]:
    """``(kind, text)`` of a conductor error payload (``{type, value}`` or anything else)."""
    if isinstance(value, dict):
        kind = str(value.get("type", "error"))
        inner = value.get("value")
        return kind, inner if isinstance(inner, str) else repr(inner)
    return "error", str(value)
