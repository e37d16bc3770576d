"""The one error tree: what went wrong, where, and what each edge does about it.

Why a module of its own: an error raised in one module and caught in another should not make
either import the other (structlog's exceptions.py, "factored out to avoid import loops").
It imports only values from below it (the core's `SegmentLocation`, the protocol's `AckCode`,
the refusal codes), never a listener, route or store.

Every error is an `AdapterError` with a `Disposition`: the ACK code it is answered with
(AE: the sender may correct and resend; AR: resending the same message cannot succeed; the
edge sends CE/CR instead in enhanced mode), the HTTP status, whether the input is kept as a
dead letter, and the CLI's exit code. Each edge translates an error once, from these typed
facts (the MLLP server and `POST /hl7` through `adapter.hl7_answers`, the FHIR
routes through the OperationOutcome middleware, the CLIs by `exit_code`); none reads an
error's text to decide anything. The text (`message`) is for people: short, fixed, no PHI.

HL7 refusals are usually returned, not raised (ingest keeps the dead letter and gives the
refusal back with its result, on the per-message path where raising buys nothing): an
exception is still the natural type for "what went wrong", and raising one is allowed.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import ClassVar

from adapter.core.model import SegmentLocation
from adapter.core.refusals import Refusal, RefusalReason, hl7_location
from adapter.hl7.ack import AckCode
from adapter.setting_names import SettingName

__all__ = [
    "AdapterError",
    "Disposition",
    "HandlerFailed",
    "Hl7Refused",
    "IngestFailed",
    "NoHl7Message",
    "OversizeFrame",
    "ReceiverBusy",
    "ServerRefusal",
    "SettingsError",
    "SeveralHl7Messages",
    "StartupError",
    "UnreadableHl7",
    "UnsupportedHl7Type",
    "UnsupportedHl7Version",
]

EXIT_FAILED = 1  # the CLI ran and the thing failed (a refused message, an error in a file)
EXIT_CONFIG = 2  # the CLI could not run as asked (a setting, an argument, a file it needs)
EXIT_STARTUP = 3  # `serve` could not start: the environment refused (a port, the database)


@dataclass(frozen=True, slots=True)
class Disposition:
    """What an edge does with an error, decided by the error's type, never by its text.

    `ack` is the original-mode code (AE or AR); `http_status` what an HTTP route answers
    (`POST /hl7` answers 200 with the ACK: there the ACK is the outcome); `dead_letter`
    whether the input is kept for reprocessing; `exit_code` the CLI's.
    """

    ack: AckCode
    http_status: int
    dead_letter: bool
    exit_code: int = EXIT_FAILED

    @property
    def rejects(self) -> bool:
        """AR (CR): resending the same bytes cannot succeed."""
        return self.ack is AckCode.AR


_INTERNAL = Disposition(AckCode.AE, 500, dead_letter=False)


class AdapterError(Exception):
    """The base of every error this adapter raises or answers with.

    `message` is the text for people (ERR-8, an OperationOutcome's diagnostics, the CLI's
    one line): a short fixed sentence, never a value copied from the input.
    """

    DISPOSITION: ClassVar[Disposition] = _INTERNAL

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self._message = message

    @property
    def message(self) -> str:
        return self._message

    @property
    def disposition(self) -> Disposition:
        """The class's disposition; an error whose status is its own (HTTP) overrides it."""
        return self.DISPOSITION


class SettingsError(AdapterError, ValueError):
    """A setting has a value the service cannot run with (checked at start-up).

    `setting` names it when the error is about one (a value that does not convert); the
    check's sentence of every problem at once names each in its text and has none."""

    DISPOSITION = Disposition(AckCode.AE, 500, dead_letter=False, exit_code=EXIT_CONFIG)

    def __init__(self, message: str, setting: SettingName | None = None) -> None:
        super().__init__(message)
        self.setting = setting


class StartupError(AdapterError):
    """Start-up could not finish: `cause` in words, `setting` the variable to look at.

    An operator whose port is taken or whose database is not there needs one line
    ("cannot start: MLLP port 2575 on 127.0.0.1 is already in use (ADAPTER_MLLP_PORT)"),
    not a 60-line traceback. The exit code is the instance's: `EXIT_STARTUP` when the
    environment refused, `EXIT_CONFIG` when the fix is in a file a setting names (the
    mapping tables, a DFT profile or receivers file).
    """

    DISPOSITION = Disposition(AckCode.AE, 503, dead_letter=False, exit_code=EXIT_STARTUP)

    def __init__(self, cause: str, setting: SettingName, exit_code: int = EXIT_STARTUP) -> None:
        super().__init__(f"cannot start: {cause} ({setting})")
        self.cause = cause
        self.setting = setting
        self.exit_code = exit_code

    @property
    def disposition(self) -> Disposition:
        return replace(self.DISPOSITION, exit_code=self.exit_code)


# --- HL7 v2 refusals: ingest's, kept as dead letters -------------------------------------


class Hl7Refused(AdapterError):
    """An HL7 v2 message refused: kept as a dead letter and answered AE/AR with ERR.

    `at` is where the fault is (ERR-2, the dead letter's place), carried from where it was
    found; `err_code` the HL7 table 0357 code (ERR-3); `location` the reader's words for
    the place (message number, MSH-10, segment), for the interface analyst; `reason` the
    dead-letter worklist's code.
    """

    DISPOSITION = Disposition(AckCode.AE, 200, dead_letter=True)
    err_code: ClassVar[str] = "102"
    default_reason: ClassVar[RefusalReason] = RefusalReason.UNREADABLE_FIELD

    def __init__(
        self,
        message: str,
        *,
        at: SegmentLocation | None = None,
        location: str = "",
        reason: RefusalReason | None = None,
    ) -> None:
        super().__init__(message)
        self.at = at
        self.location = location
        self.reason = reason if reason is not None else self.default_reason

    @property
    def refusal(self) -> Refusal:
        """The dead letter's code and place (no message text: it may quote the value)."""
        return Refusal(self.reason, hl7_location(self.at))


class UnreadableHl7(Hl7Refused):
    """A segment or field the reader cannot read (ERR-3 102): AE, the sender may correct it."""

    DISPOSITION = Disposition(AckCode.AE, 200, dead_letter=True)


class UnsupportedHl7Type(Hl7Refused):
    """MSH-9 is not a message type read here (ERR-3 200): AR."""

    DISPOSITION = Disposition(AckCode.AR, 200, dead_letter=True)
    err_code = "200"
    default_reason = RefusalReason.UNSUPPORTED_TYPE


class UnsupportedHl7Version(Hl7Refused):
    """MSH-12 is not a version read here (ERR-3 203): AR."""

    DISPOSITION = Disposition(AckCode.AR, 200, dead_letter=True)
    err_code = "203"
    default_reason = RefusalReason.UNSUPPORTED_VERSION


class NoHl7Message(Hl7Refused):
    """No MSH segment: nothing to read (ERR-3 100): AR."""

    DISPOSITION = Disposition(AckCode.AR, 200, dead_letter=True)
    err_code = "100"
    default_reason = RefusalReason.NO_MESSAGE


class SeveralHl7Messages(Hl7Refused):
    """A second MSH in one MLLP frame (ERR-3 100 at MSH #2): AR, one ACK cannot answer two."""

    DISPOSITION = Disposition(AckCode.AR, 200, dead_letter=True)
    err_code = "100"
    default_reason = RefusalReason.SEVERAL_MESSAGES


# --- the MLLP server's and the handler's own answers -------------------------------------


class ServerRefusal(AdapterError):
    """An answer the receiver gives without the message being read: ERR-3 207, no location."""

    err_code: ClassVar[str] = "207"


class OversizeFrame(ServerRefusal):
    """A frame over the size limit: AR (the same bytes cannot succeed); its head is kept."""

    DISPOSITION = Disposition(AckCode.AR, 413, dead_letter=True)


class ReceiverBusy(ServerRefusal):
    """Too many unfinished frames buffered: AR, resend later (nothing was kept)."""

    DISPOSITION = Disposition(AckCode.AR, 503, dead_letter=False)


class HandlerFailed(ServerRefusal):
    """The message handler raised or gave an unframeable ACK: AE, resend later."""

    DISPOSITION = Disposition(AckCode.AE, 500, dead_letter=False)


class IngestFailed(ServerRefusal):
    """The store failed or stalled while keeping the message: AE, resend later (dedup)."""

    DISPOSITION = Disposition(AckCode.AE, 503, dead_letter=False)
