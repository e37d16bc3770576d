"""FHIR MedicationAdministration (R4 and R5) to an `Administration`.

R4 and R5 differ only in spelling here (`effective[x]` vs `occurence[x]`,
`medication[x]` vs the `medication` CodeableReference, `reasonCode` vs
`reason`), so one reader accepts both. Subject, time and medication are
required: without them nothing can be billed, so they are errors, while every
optional element that is absent simply stays unknown for the coder to hold on.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from types import MappingProxyType

from adapter.core.model import (
    Administration,
    AdminStatus,
    Code,
    Ingredient,
    IngredientRole,
    Method,
    Quantity,
    Route,
)
from adapter.readers.fhir.codes import concept_codes, concept_text
from adapter.readers.fhir.datetimes import get_datetime, get_period
from adapter.readers.fhir.elements import (
    JsonObject,
    ReadError,
    get_bool,
    get_decimal,
    get_object,
    get_objects,
    get_str,
)
from adapter.readers.fhir.indications import read_indications
from adapter.readers.fhir.quantities import get_quantity, normalize_unit, read_quantity
from adapter.readers.fhir.reading import Located, Reading

EXT_WASTE = "https://charge-adapter.org/fhir/StructureDefinition/discarded-amount"
EXT_VOLUME = "https://charge-adapter.org/fhir/StructureDefinition/infused-volume"
EXT_DURATION = "https://charge-adapter.org/fhir/StructureDefinition/expected-duration"

_STATUS: Mapping[str, AdminStatus] = MappingProxyType(
    {
        "completed": AdminStatus.COMPLETED,
        "stopped": AdminStatus.PARTIAL,
        "not-done": AdminStatus.NOT_DONE,
        "in-progress": AdminStatus.IN_PROGRESS,
        "on-hold": AdminStatus.IN_PROGRESS,
        "entered-in-error": AdminStatus.ENTERED_IN_ERROR,
    }
)


_TIME_PREFIXES = ("effective", "occurence", "occurrence")  # R4, R5 as published, R5 errata

_SECONDS: Mapping[str, Decimal] = MappingProxyType(
    {
        "s": Decimal(1),
        "sec": Decimal(1),
        "min": Decimal(60),
        "h": Decimal(3600),
        "hr": Decimal(3600),
        "hour": Decimal(3600),
        "d": Decimal(86400),
        "day": Decimal(86400),
        "wk": Decimal(604800),
    }
)
_MILLILITRES: Mapping[str, Decimal] = MappingProxyType({"mL": Decimal(1), "L": Decimal(1000)})


@dataclass(frozen=True, slots=True)
class _Product:
    """What medication[x] names: the product's codes, and its ingredients when it is a mix."""

    codes: tuple[Code, ...]
    text: str
    parts: tuple[Ingredient, ...] = ()


def read_administration(r: Reading) -> Administration:
    """One MedicationAdministration; required elements missing or malformed raise ReadError."""
    res, path = r.resource, r.path
    patient_id = r.patient_id("subject")
    start, end, stop_note = _times(r)
    product = _medication(r)
    dosage = get_object(res, "dosage", path) or {}
    dpath = f"{path}.dosage"
    extensions = _extensions(res, path)
    route, route_text = _route(r, dosage, dpath)
    return Administration(
        source_id=r.source_id,
        patient_id=patient_id,
        start=start,
        end=end,
        stop_note=stop_note,
        ingredients=_ingredients(product, dosage, dpath),
        visit_id=r.encounter_id("context", "encounter"),
        route=route,
        route_text=route_text,
        method=_method(r, dosage, dpath),
        access_site=_site(dosage, dpath),
        rate=_rate(dosage, dpath),
        volume=_ext_quantity(extensions, EXT_VOLUME),
        indications=read_indications(r),
        status=_STATUS.get(get_str(res, "status", path) or "", AdminStatus.IN_PROGRESS),
        wasted=_ext_quantity(extensions, EXT_WASTE),
        expected_minutes=_expected_minutes(extensions),
    )


# --- time ---------------------------------------------------------------------------------


def _times(r: Reading) -> tuple[datetime, datetime | None, str]:
    """Start, end and why there is no end; an end equal to the start documents no stop time
    (as HL7 RXA-4)."""
    tz = r.scope.site_tz
    for prefix in _TIME_PREFIXES:
        moment = get_datetime(r.resource, f"{prefix}DateTime", r.path, tz)
        if moment is not None:
            return moment, None, f"{prefix}DateTime only (no period end)"
        period = get_period(r.resource, f"{prefix}Period", r.path, tz)
        if period is not None:
            if period.start is None:
                raise ReadError(f"{r.path}.{prefix}Period.start", "missing: no start time")
            if period.end is None:
                return period.start, None, f"{prefix}Period.end is absent"
            if period.end == period.start:
                note = f"{prefix}Period.end equals its start (no real stop time)"
                return period.start, None, note
            return period.start, period.end, ""
    raise ReadError(r.path, "missing effective[x] (R4) or occurence[x] (R5): no time")


# --- medication ---------------------------------------------------------------------------


def _medication(r: Reading) -> _Product:
    """R4 medicationCodeableConcept / medicationReference, R5 medication.concept / .reference."""
    res, path = r.resource, r.path
    concept = get_object(res, "medicationCodeableConcept", path)
    if concept is not None:
        return _from_concept(concept, f"{path}.medicationCodeableConcept")
    ref = get_object(res, "medicationReference", path)
    if ref is not None:
        return _from_reference(r, ref, f"{path}.medicationReference")
    r5 = get_object(res, "medication", path)
    if r5 is not None:
        concept = get_object(r5, "concept", f"{path}.medication")
        if concept is not None:
            return _from_concept(concept, f"{path}.medication.concept")
        ref = get_object(r5, "reference", f"{path}.medication")
        if ref is not None:
            return _from_reference(r, ref, f"{path}.medication.reference")
    raise ReadError(path, "missing medication[x]: no medication named")


def _from_concept(concept: JsonObject, path: str) -> _Product:
    codes, text = concept_codes(concept, path), concept_text(concept, path)
    if not codes and not text:
        raise ReadError(path, "medication has neither a coding nor a text")
    return _Product(codes, text)


def _from_reference(r: Reading, ref: JsonObject, path: str) -> _Product:
    """A reference we cannot resolve still names a drug: the coder holds it as unknown (D14)."""
    reference = get_str(ref, "reference", path)
    display = get_str(ref, "display", path) or ""
    if reference is None:
        if not display:
            raise ReadError(path, "medication reference has neither a reference nor a display")
        return _Product((), display)
    found = r.resolve(reference)
    if found is None or found.resource.get("resourceType") != "Medication":
        return _Product((), display)
    return _from_medication(r, found)


def _from_medication(r: Reading, located: Located) -> _Product:
    """A Medication: its code, plus one ingredient per `ingredient[]` when it is a mix (R8)."""
    mpath, med = located.path, located.resource
    code = get_object(med, "code", mpath)
    codes = concept_codes(code, f"{mpath}.code") if code else ()
    text = concept_text(code, f"{mpath}.code") if code else ""
    items = get_objects(med, "ingredient", mpath)
    parts = tuple(_ingredient(r, item, ipath) for ipath, item in items)
    if len(parts) == 1:  # a single-ingredient product: its codes help the catalog match
        return _Product(codes + parts[0].codes, text or parts[0].text)
    return _Product(codes, text, parts)


def _ingredient(r: Reading, item: JsonObject, path: str) -> Ingredient:
    """R4 item[x] + strength, R5 item (CodeableReference) + strength[x]; isActive false = base."""
    codes, text = _ingredient_item(r, item, path)
    active = get_bool(item, "isActive", path)
    role = IngredientRole.BASE if active is False else IngredientRole.ACTIVE
    return Ingredient(codes, _strength(item, path), role, text)


def _ingredient_item(r: Reading, item: JsonObject, path: str) -> tuple[tuple[Code, ...], str]:
    concept = get_object(item, "itemCodeableConcept", path)
    if concept is not None:
        cpath = f"{path}.itemCodeableConcept"
        return concept_codes(concept, cpath), concept_text(concept, cpath)
    ref = get_object(item, "itemReference", path)
    r5 = get_object(item, "item", path)
    if ref is None and r5 is not None:
        concept = get_object(r5, "concept", f"{path}.item")
        if concept is not None:
            cpath = f"{path}.item.concept"
            return concept_codes(concept, cpath), concept_text(concept, cpath)
        ref = get_object(r5, "reference", f"{path}.item")
    if ref is None:
        return (), ""
    return _referenced_substance(r, ref, path)


def _referenced_substance(r: Reading, ref: JsonObject, path: str) -> tuple[tuple[Code, ...], str]:
    """A Medication or Substance ingredient: its code (R5 Substance.code is a CodeableReference)."""
    reference = get_str(ref, "reference", path)
    found = r.resolve(reference) if reference else None
    if found is None:
        return (), get_str(ref, "display", path) or ""
    code = get_object(found.resource, "code", found.path)
    cpath = f"{found.path}.code"
    if code is not None and "concept" in code:
        code, cpath = get_object(code, "concept", cpath), f"{cpath}.concept"
    if code is None:
        return (), ""
    return concept_codes(code, cpath), concept_text(code, cpath)


def _strength(item: JsonObject, path: str) -> Quantity | None:
    """The amount in the container: R4 strength / R5 strengthRatio numerator, strengthQuantity.

    `strength.ratio` (not a FHIR shape) is tolerated as well: cheaper than an error.
    """
    ratio = get_object(item, "strengthRatio", path)
    rpath = f"{path}.strengthRatio"
    if ratio is None:
        ratio = get_object(item, "strength", path)
        rpath = f"{path}.strength"
        if ratio is not None and "ratio" in ratio:
            ratio, rpath = get_object(ratio, "ratio", rpath), f"{rpath}.ratio"
    if ratio is not None:
        return get_quantity(ratio, "numerator", rpath)
    return get_quantity(item, "strengthQuantity", path)


def _ingredients(product: _Product, dosage: JsonObject, dpath: str) -> tuple[Ingredient, ...]:
    """A mix keeps its ingredients' amounts; a single product takes the dose."""
    if len(product.parts) > 1:
        return product.parts
    dose = get_quantity(dosage, "dose", dpath)
    return (Ingredient(product.codes, dose, IngredientRole.ACTIVE, product.text),)


# --- dosage -------------------------------------------------------------------------------


def _candidates(dosage: JsonObject, key: str, path: str) -> list[str]:
    """Coding codes first, then the text: a site table may list either."""
    concept = get_object(dosage, key, path)
    if concept is None:
        return []
    cpath = f"{path}.{key}"
    found = [code.code for code in concept_codes(concept, cpath)]
    text = get_str(concept, "text", cpath)
    if text is not None:
        found.append(text)
    return found


def _route(r: Reading, dosage: JsonObject, dpath: str) -> tuple[Route, str]:
    """The route table's reading of `dosage.route` (codings, then text), and what was sent:
    an unknown route's hold names it."""
    sent = _candidates(dosage, "route", dpath)
    for candidate in sent:
        route = r.scope.mappings.route(candidate)
        if route is not Route.UNKNOWN:
            return route, _printable(candidate)
    return Route.UNKNOWN, _printable(sent[0]) if sent else ""


def _printable(text: str, limit: int = 40) -> str:
    """Wire text echoed into a hold: printable and short."""
    return "".join(ch if ch.isprintable() else "?" for ch in text.strip()[:limit])


def _method(r: Reading, dosage: JsonObject, dpath: str) -> Method:
    for candidate in _candidates(dosage, "method", dpath):
        method = r.scope.mappings.method(candidate)
        if method is not Method.UNSPECIFIED:
            return method
    return Method.UNSPECIFIED


def _site(dosage: JsonObject, dpath: str) -> str | None:
    """The access site (D10a compares them): first coding's code, else the text."""
    found = _candidates(dosage, "site", dpath)
    return found[0] if found else None


def _rate(dosage: JsonObject, dpath: str) -> Quantity | None:
    """A volume rate in mL/h, the only rate D5 can use; any other rate is dropped."""
    quantity = get_object(dosage, "rateQuantity", dpath)
    if quantity is not None:
        qpath = f"{dpath}.rateQuantity"
        value = get_decimal(quantity, "value", qpath)
        unit = get_str(quantity, "code", qpath) or get_str(quantity, "unit", qpath) or ""
        volume, _, per = unit.partition("/")
        if value is None or not per:
            return None
        return _ml_per_hour(Quantity(value, normalize_unit(volume)), Quantity(Decimal(1), per))
    ratio = get_object(dosage, "rateRatio", dpath)
    if ratio is None:
        return None
    rpath = f"{dpath}.rateRatio"
    numerator = get_quantity(ratio, "numerator", rpath)
    denominator = get_quantity(ratio, "denominator", rpath)
    if numerator is None or denominator is None:
        return None
    return _ml_per_hour(numerator, denominator)


def _ml_per_hour(volume: Quantity, time: Quantity) -> Quantity | None:
    """Volume per any time unit (250 mL / 30 min, 8 mL/min) as mL/h; None if not a volume rate."""
    seconds = _SECONDS.get(time.unit.strip("()").lower())
    millilitres = _MILLILITRES.get(volume.unit)
    if seconds is None or millilitres is None or time.value <= 0:
        return None
    rate = volume.value * millilitres * Decimal(3600) / (seconds * time.value)
    return Quantity(rate, "mL/h")


# --- extensions ---------------------------------------------------------------------------


def _extensions(res: JsonObject, path: str) -> Mapping[str, tuple[str, JsonObject]]:
    """Our extensions by url (first wins), each with its path."""
    found: dict[str, tuple[str, JsonObject]] = {}
    for epath, ext in get_objects(res, "extension", path):
        url = get_str(ext, "url", epath)
        if url in (EXT_WASTE, EXT_VOLUME, EXT_DURATION):
            found.setdefault(url, (epath, ext))
    return found


def _ext_quantity(extensions: Mapping[str, tuple[str, JsonObject]], url: str) -> Quantity | None:
    located = extensions.get(url)
    if located is None:
        return None
    return get_quantity(located[1], "valueQuantity", located[0])


def _expected_minutes(extensions: Mapping[str, tuple[str, JsonObject]]) -> int | None:
    """The ordered duration in whole minutes (D13's 8-hour pump test only)."""
    located = extensions.get(EXT_DURATION)
    if located is None:
        return None
    epath, ext = located
    duration = get_object(ext, "valueDuration", epath)
    if duration is None:
        return None
    quantity = read_quantity(duration, f"{epath}.valueDuration")
    seconds = _SECONDS.get(quantity.unit.lower()) if quantity else None
    if quantity is None or seconds is None:
        return None
    return int((quantity.value * seconds / 60).to_integral_value())
