"""The Claim's version history, as a biller reads it: each version, when, its status, and
what it changed against the one before (lines added, removed, changed; diagnoses).

The diff is `adapter.core.claim_diff`, the same definition of "the same lines" the
re-code after an override uses.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC
from typing import Any

from adapter.core.claim_diff import diff_claims
from adapter.core.review_decision import is_override
from adapter.store.base import ResourceRow


def claim_history(versions: Sequence[ResourceRow]) -> list[dict[str, Any]]:
    """Oldest first: version, when (UTC), status, why and the changes from the previous."""
    rows = sorted(versions, key=lambda r: r.version)
    out: list[dict[str, Any]] = []
    previous: dict[str, Any] | None = None
    for row in rows:
        body = json.loads(row.body)
        diff = diff_claims(previous, body)
        changes = diff.lines() if previous is not None else ["first version"]
        if previous is not None and not changes:
            changes = ["no change to the lines or diagnoses"]
        out.append(
            {
                "version": row.version,
                "at": row.last_updated.astimezone(UTC).strftime("%Y-%m-%d %H:%M"),
                "status": row.status,
                "why": _why(previous, body),
                "changes": changes,
            }
        )
        previous = body
    return out


def _why(previous: dict[str, Any] | None, body: dict[str, Any]) -> str:
    if is_override(body) and (previous is None or not is_override(previous)):
        return "billed as coded (override)"
    if previous is None:
        return "coded"
    if previous.get("status") != body.get("status"):
        return f"{previous.get('status', '')} → {body.get('status', '')}"
    return "coded again"
