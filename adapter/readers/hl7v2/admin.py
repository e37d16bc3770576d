"""RAS: one `Administration` per RXA (its RXR, RXC and OBX waste), with the visit of PV1."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from types import MappingProxyType

from adapter.core.mappings import Mappings
from adapter.core.model import (
    Action,
    Administration,
    AdminStatus,
    Code,
    CodeSystem,
    Ingredient,
    IngredientRole,
    Method,
    Quantity,
    Route,
    VisitStatus,
)
from adapter.hl7.er7 import Message, Segment
from adapter.readers.hl7v2.diagnoses import read_indications
from adapter.readers.hl7v2.faults import fault, safe
from adapter.readers.hl7v2.header import Context, Header, Outcome
from adapter.readers.hl7v2.orders import AdminBlock, Scope, order_groups, order_scope
from adapter.readers.hl7v2.values import (
    optional_ts,
    read_amount,
    read_decimal,
    read_provider,
    read_rate,
    required_ts,
    to_quantity,
)
from adapter.readers.hl7v2.visit import read_patient_id, read_visit

DISCARDED_AMOUNT = "discarded-amount"  # meaning of an OBX-3 code in mappings.observation_codes


def read_ras(message: Message, header: Header, context: Context) -> Outcome:
    """RAS: one Administration per RXA, plus the visit context of PV1 (without diagnoses)."""
    patient = read_patient_id(message)
    pv1 = message.first("PV1")
    visit = read_visit(pv1, patient, VisitStatus.UNKNOWN, context) if pv1 else None
    admins: list[Administration] = []
    for group in order_groups(message.segments):
        if group.admins:
            scope = order_scope(group, patient, pv1)
            admins.extend(_administration(block, scope, context) for block in group.admins)
    return ((visit,) if visit else ()) + _distinct_ids(admins)


def _distinct_ids(admins: list[Administration]) -> tuple[Administration, ...]:
    """Number RXAs of one message that share every identifying field (`#2`, `#3`...).

    Two RXA with the same order, RXA-1/RXA-2, start and given code (two identical
    bags hung together) are still two administrations; their order in the message
    is the same in a resend, so the numbering finds the same originals again.
    """
    seen: dict[str, int] = {}
    found: list[Administration] = []
    for admin in admins:
        count = seen.get(admin.source_id, 0) + 1
        seen[admin.source_id] = count
        found.append(
            admin if count == 1 else replace(admin, source_id=f"{admin.source_id}#{count}")
        )
    return tuple(found)


def _administration(block: AdminBlock, scope: Scope, context: Context) -> Administration:
    """One RXA; its own RXR/RXC win over the order's (RXE's) ones."""
    rxa = block.rxa
    start = required_ts(rxa, 3, context)
    end = optional_ts(rxa, 4, context)
    rxr = block.group_rxr or scope.rxr
    rxcs = tuple(s for s in block.tail if s.name == "RXC") or _order_rxcs(rxa, scope, context)
    route, route_text = _route(rxr, context.mappings)
    ingredients = tuple(_rxc_ingredient(s) for s in rxcs) if rxcs else (_rxa_ingredient(rxa),)
    correction_key = f"hl7:{scope.order_id}:{rxa.get(1).strip()}:{rxa.get(2).strip()}"
    return Administration(
        source_id=f"{correction_key}:{_given(rxa, start)}",
        correction_key=correction_key,
        patient_id=scope.patient_id,
        start=start,
        end=None if end == start else end,
        stop_note=_stop_note(rxa, start, end),
        ingredients=ingredients,
        visit_id=scope.visit_id,
        route=route,
        route_text=route_text,
        method=_method(rxr, context.mappings),
        access_site=_access_site(rxr),
        rate=read_rate(rxa),
        volume=read_amount(rxa, 23, 24, "mL"),
        indications=read_indications(rxa, 19) or scope.indications,
        status=_status(rxa),
        action=_action(rxa),
        wasted=_waste(block.tail, context.mappings),
        location=scope.location or rxa.get(11).strip() or rxa.get(11, 4).strip() or None,
        expected_minutes=scope.expected_minutes,
        patient_class=scope.patient_class,
        performer=read_provider(rxa, 10),
        orderer=scope.orderer,
        filler_order=scope.filler_order,
    )


def _stop_note(rxa: Segment, start: datetime, end: datetime | None) -> str:
    """Why there is no stop time, as the interface analyst will look for it."""
    if end is None:
        return "RXA-4 is empty"
    return "RXA-4 equals RXA-3 (no real stop time)" if end == start else ""


def _given(rxa: Segment, start: datetime) -> str:
    """What tells apart RXAs that share order and RXA-1/RXA-2: start (UTC) and given code.

    Senders leave RXA-1/RXA-2 at `0|1` for every RXA of an order (a bag and its
    additive, the doses of a standing order on different days) and reuse order numbers;
    the start and the code of what was given differ where the administrations differ,
    and stay the same in a resend of the same documentation.
    """
    code = rxa.get(5, 1).strip() or rxa.get(5, 4).strip() or rxa.get(5, 2).strip()
    return f"{start.astimezone(UTC):%Y%m%dT%H%M%SZ}:{safe(code)}"


def _order_rxcs(rxa: Segment, scope: Scope, context: Context) -> tuple[Segment, ...]:
    """The order's RXC components, unless RXA-5 itself names a drug.

    RXA-5 is what was given: a bag and its additive documented as two RXA under an
    order whose RXE lists both as RXC must stay two administrations, each its own
    drug, not twice the whole mix. The order's components describe an RXA only
    when its RXA-5 is a local name for the mix: no standard code (NDC, RxNorm,
    HCPCS) and nothing the catalog knows.
    """
    if not scope.rxcs:
        return ()
    codes = _drug_codes(rxa, 5)
    standard = any(c.system != CodeSystem.LOCAL.value for c in codes)
    if standard or context.mappings.catalog.match(codes) is not None:
        return ()
    return scope.rxcs


def _access_site(rxr: Segment | None) -> str | None:
    """RXR-2 site code, else its text: only compared between overlapping infusions (D10a)."""
    if rxr is None:
        return None
    site = rxr.components(2)
    return next((c.strip() for c in site[:2] if c.strip()), None)


def _rxa_ingredient(rxa: Segment) -> Ingredient:
    text = rxa.get(5, 2).strip() or rxa.get(5, 5).strip()
    return Ingredient(_drug_codes(rxa, 5), read_amount(rxa, 6, 7, ""), IngredientRole.ACTIVE, text)


def _rxc_ingredient(rxc: Segment) -> Ingredient:
    """RXC-1 `B` is the base fluid, `A` (or empty) an additive: the drug (R8)."""
    kind = rxc.get(1).strip().upper()
    if kind not in ("A", "B", ""):
        raise fault(rxc, 1, "component type is not A or B")
    role = IngredientRole.BASE if kind == "B" else IngredientRole.ACTIVE
    text = rxc.get(2, 2).strip() or rxc.get(2, 5).strip()
    return Ingredient(_drug_codes(rxc, 2), read_amount(rxc, 3, 4, ""), role, text)


def _drug_codes(segment: Segment, field: int) -> tuple[Code, ...]:
    """A CWE's identifier, alternate and (2.7+) second alternate, each with its system."""
    cwe = segment.components(field)
    codes: list[Code] = []
    for code_i in (0, 3, 9):
        code = cwe[code_i].strip() if code_i < len(cwe) else ""
        if code:
            text = cwe[code_i + 1].strip() if code_i + 1 < len(cwe) else ""
            raw_system = cwe[code_i + 2].strip().upper() if code_i + 2 < len(cwe) else ""
            system = _DRUG_SYSTEMS.get(raw_system, CodeSystem.LOCAL)
            codes.append(Code(system.value, code, text))
    return tuple(codes)


_DRUG_SYSTEMS: Mapping[str, CodeSystem] = MappingProxyType(
    {
        "NDC": CodeSystem.NDC,
        "RXNORM": CodeSystem.RXNORM,
        "RXN": CodeSystem.RXNORM,
        "HCPCS": CodeSystem.HCPCS,
        "HCPC": CodeSystem.HCPCS,
        "HPC": CodeSystem.HCPCS,
        "CPT": CodeSystem.HCPCS,
        "CPT4": CodeSystem.HCPCS,
        "C4": CodeSystem.HCPCS,
    }
)


def _route(rxr: Segment | None, mappings: Mappings) -> tuple[Route, str]:
    """RXR-1 through the site's route table, and what the feed wrote.

    Identifier, alternate identifier, then the texts (`^Intravenous`, `^IV push`: many
    feeds send no code), each looked up in `mappings/routes.csv`, whose rows hold codes
    and text synonyms alike. When none matches, the first value sent is kept so the
    unknown-route hold can name it.
    """
    if rxr is None:
        return Route.UNKNOWN, ""
    sent = [v for c in (1, 4, 2, 5) if (v := rxr.get(1, c).strip())]
    for value in sent:
        if (route := mappings.route(value)) is not Route.UNKNOWN:
            return route, safe(value)
    return Route.UNKNOWN, safe(sent[0]) if sent else ""


def _method(rxr: Segment | None, mappings: Mappings) -> Method:
    """RXR-4 (identifier, then alternate) through the site's method table.

    Some feeds put the method in the route (RXR-1 `IVP`, `IV PUSH`): when RXR-4
    says nothing, a route code that names a push or a pump counts too, so a
    documented push is not mistaken for an infusion (D4).
    """
    if rxr is None:
        return Method.UNSPECIFIED
    for component in (1, 4, 2, 5):  # codes, then texts (`^IV push`)
        code = rxr.get(4, component).strip()
        if code and (method := mappings.method(code)) is not Method.UNSPECIFIED:
            return method
    for component in (1, 4, 2, 5):
        code = rxr.get(1, component).strip()
        if code and (method := mappings.method(code)) in (Method.PUSH, Method.PUMP):
            return method
    return Method.UNSPECIFIED


def _status(rxa: Segment) -> AdminStatus:
    """RXA-20 (table 0322); empty means complete, as HL7 defines it."""
    status = _COMPLETION.get(rxa.get(20).strip().upper())
    if status is None:
        raise fault(rxa, 20, "completion status is not CP, PA, NA or RE")
    return status


_COMPLETION: Mapping[str, AdminStatus] = MappingProxyType(
    {
        "": AdminStatus.COMPLETED,
        "CP": AdminStatus.COMPLETED,
        "PA": AdminStatus.PARTIAL,
        "NA": AdminStatus.NOT_DONE,
        "RE": AdminStatus.NOT_DONE,
    }
)


def _action(rxa: Segment) -> Action:
    """RXA-21 (table 0206); empty means add."""
    action = _ACTIONS.get(rxa.get(21).strip().upper())
    if action is None:
        raise fault(rxa, 21, "action code is not A, U or D")
    return action


_ACTIONS: Mapping[str, Action] = MappingProxyType(
    {"": Action.ADD, "A": Action.ADD, "U": Action.UPDATE, "D": Action.DELETE}
)


def _waste(tail: Iterable[Segment], mappings: Mappings) -> Quantity | None:
    """Documented discard (D17): OBX after the RXA whose OBX-3 means discarded amount."""
    total: Quantity | None = None
    for obx in tail:
        if obx.name != "OBX" or not is_waste(obx, mappings):
            continue
        if obx.get(11).strip().upper() in ("W", "D", "X"):  # wrong, deleted, cannot obtain
            continue
        amount = read_amount(obx, 5, 6, "") if obx.get(5).strip() else _sn_amount(obx)
        if amount is None:
            continue
        if total is not None and total.unit != amount.unit:
            raise fault(obx, 6, "waste units differ between OBX segments")
        total = amount if total is None else Quantity(total.value + amount.value, total.unit)
    return total


def is_waste(obx: Segment, mappings: Mappings) -> bool:
    """An OBX that documents the discarded amount (JW): coded WASTE or mapped to it.

    Shared with the hot-path frame check (readers/hl7v2/hot.py), which must see waste exactly
    as the full read does."""
    codes = mappings.observation_codes
    for component in (1, 4):
        code = obx.get(3, component).strip()
        if code and (
            code.upper() == "WASTE"
            or codes.get(code) == DISCARDED_AMOUNT
            or codes.get(code.upper()) == DISCARDED_AMOUNT
        ):
            return True
    return False


def _sn_amount(obx: Segment) -> Quantity | None:
    """OBX-5 as a structured numeric (`^12.5`): the number sits in component 2."""
    text = obx.get(5, 2).strip()
    if not text:
        return None
    return to_quantity(read_decimal(obx, 5, text), obx.get(6).strip() or obx.get(6, 2).strip())
