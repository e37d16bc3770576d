"""The HL7 v2 edge's one translation: an ingest result or an error of the tree -> its ACKs.

Used by the MLLP server (its own refusals: oversize, busy, a failed handler) and by
`AppState.handle_hl7`, which answers MLLP and `POST /hl7` alike. The code comes from the
error's `Disposition` (AE/AR, CE/CR in enhanced mode), ERR from its typed facts (table 0357
code, `SegmentLocation`, fixed text); the ACK is built by `adapter.hl7.ack`, and each ACK
travels with the code it carries, so nobody reads an MSA back.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from adapter.errors import Hl7Refused, IngestFailed, ServerRefusal
from adapter.hl7.ack import (
    AckCode,
    AckError,
    ack_control_id,
    ack_from_header,
    acks_for,
    error_ack_code,
)
from adapter.hl7.msh import MshInfo, read_msh

__all__ = ["HandlerResult", "ack_error", "ack_for", "internal_error", "refusal_answer"]

ERR_TEXT_MAX = 200  # ERR-8 is cut here: a fixed sentence, never a long quote


class Outcome(Protocol):
    """What ingest says of one message (`adapter.usecases.ingest.Hl7Result`)."""

    @property
    def control_id(self) -> str: ...

    @property
    def refusal(self) -> Hl7Refused | None: ...

    @property
    def ack_code(self) -> AckCode: ...

    @property
    def header(self) -> MshInfo | None:
        """The message's MSH when ingest already read it (None: read it from the bytes)."""
        ...


@dataclass(frozen=True, slots=True)
class HandlerResult:
    """The answer to one message: an ER7 ACK (unframed) with its code, or None to send nothing.

    None (and `ack_code` None) is for enhanced mode when the accept-acknowledgment type says
    no answer (MSH-15 NE, or SU after a failure). `ack_code` is the code `ack` carries, set
    where the ACK is built; with `control_id` it feeds the log line (an empty control id
    means "do not log one": it may be PHI). `more_acks` are written right after `ack`, in
    order, on the same connection: in enhanced mode, the application acknowledgment that
    follows the accept acknowledgment.
    """

    ack: bytes | None
    ack_code: AckCode | None
    control_id: str = ""
    more_acks: Sequence[bytes] = ()


def ack_error(error: Hl7Refused | ServerRefusal) -> AckError:
    """ERR from the error's typed facts; the text is cut to `ERR_TEXT_MAX` characters."""
    at = error.at if isinstance(error, Hl7Refused) else None
    return AckError(code=error.err_code, message=error.message[:ERR_TEXT_MAX], at=at)


def ack_for(raw: bytes, result: Outcome, now: datetime) -> HandlerResult:
    """The ACKs of a kept or refused message, in the mode the sender asked for (`acks_for`)."""
    refusal = result.refusal
    header = result.header
    acks = acks_for(
        header if header is not None else read_msh(raw),
        result.ack_code,
        error=ack_error(refusal) if refusal is not None else None,
        now=now,
        control_ids=ack_control_id,
    )
    if not acks:  # enhanced mode, and the sender asked for no acknowledgment
        return HandlerResult(None, None, result.control_id)
    (code, first), *more = acks
    return HandlerResult(first, code, result.control_id, [ack for _, ack in more])


def refusal_answer(
    msh: MshInfo | None,
    error: ServerRefusal,
    now: datetime,
    control_ids: Callable[[], str] = ack_control_id,
) -> HandlerResult:
    """The receiver's own negative ACK (AE/AR by the error's disposition, CE/CR in enhanced
    mode; nothing when MSH-15 says NE, or SU), ERR-3 207 with the error's text."""
    control_id = msh.loggable_control_id if msh is not None else ""
    code = error_ack_code(msh, reject=error.disposition.rejects)
    if code is None:
        return HandlerResult(None, None, control_id)
    ack = ack_from_header(msh, code, error=ack_error(error), now=now, control_id=control_ids())
    return HandlerResult(ack, code, control_id)


def internal_error(raw: bytes, now: datetime) -> HandlerResult:
    """AE 207 (CE in enhanced mode, nothing when MSH-15 says NE/SU): resend later."""
    failed = IngestFailed("message could not be stored; resend later")
    return refusal_answer(read_msh(raw), failed, now)
