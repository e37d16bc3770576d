"""Which acknowledgement a stored (or refused) HL7 v2 message gets.

Original mode (no MSH-15/16): AA once committed, AE/AR with an ERR segment
otherwise. Enhanced mode: the accept acknowledgement (CA/CE/CR) as MSH-15 asks
(AL always, ER only on error, SU only on success, NE never), followed on the
same connection by the application acknowledgement when MSH-16 asks for one;
the adapter has applied the message once it is committed, so that is AA/AE/AR
with the same outcome.
"""

from __future__ import annotations

from datetime import datetime

from adapter.hl7.ack import AckError, MshInfo, ack_control_id, ack_from_header, read_msh
from adapter.service.ingest import Hl7Result, Rejection
from adapter.service.mllp import HandlerResult


def ack_for(raw: bytes, result: Hl7Result, now: datetime) -> HandlerResult:
    msh = read_msh(raw)
    error = _ack_error(result.rejection)
    if msh is None or not msh.enhanced_mode:
        ack = ack_from_header(
            msh, result.ack_code, error=error, now=now, control_id=ack_control_id()
        )
        return HandlerResult(ack, result.ack_code, result.control_id)
    acks = _enhanced(msh, result, error, now)
    return HandlerResult(acks[0] if acks else None, _code(acks), result.control_id, acks[1:])


def _enhanced(
    msh: MshInfo, result: Hl7Result, error: AckError | None, now: datetime
) -> list[bytes]:
    success = result.ack_code == "AA"
    accept_code = {"AA": "CA", "AE": "CE", "AR": "CR"}[result.ack_code]
    out = []
    if _wanted(msh.accept_ack_type or "AL", success):
        out.append(
            ack_from_header(msh, accept_code, error=error, now=now, control_id=ack_control_id())
        )
    if _wanted(msh.app_ack_type or "NE", success):
        out.append(
            ack_from_header(msh, result.ack_code, error=error, now=now, control_id=ack_control_id())
        )
    return out


def _wanted(condition: str, success: bool) -> bool:
    """HL7 table 0155: AL always, NE never, ER only on error, SU only on success."""
    return (
        condition == "AL" or (condition == "ER" and not success) or (condition == "SU" and success)
    )


def _code(acks: list[bytes]) -> str:
    from adapter.hl7.ack import read_msa

    return read_msa(acks[0])[0] if acks else ""


def _ack_error(rejection: Rejection | None) -> AckError | None:
    if rejection is None:
        return None
    return AckError(
        code=rejection.err_code,
        message=rejection.message[:200],
        segment=rejection.segment,
        sequence=rejection.sequence,
        field=rejection.field,
    )
