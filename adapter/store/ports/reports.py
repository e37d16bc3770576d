"""The Reports port: what the workbench reports read, at unit, week and code level only.

Rows, not tables: the store selects the Claim versions (or the coded Claims' lines) that
match the filters, in one read snapshot; the pure aggregations in `adapter.core.reports`,
`report_lag` and `report_payment` count them. No row carries a patient identifier.
"""

from __future__ import annotations

from typing import Protocol

from adapter.core.report_rows import ClaimVersion, CodedClaim, ReportFilter


class Reports(Protocol):
    async def claim_versions(self, query: ReportFilter) -> list[ClaimVersion]:
        """Every stored version (held or coded) of the Claims matching the filters, each with
        its hold reasons, unmatched drug codes and first delivery; by Claim, then version."""

    async def coded_claims(self, query: ReportFilter) -> list[CodedClaim]:
        """The current version of every coded (active) Claim matching the filters, with
        its lines (code, units, service date), for pricing."""

    async def report_locations(self) -> list[str]:
        """The locations of the current Claims, sorted (the reports' location filter)."""
