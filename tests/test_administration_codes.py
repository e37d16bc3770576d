"""Drug-administration CPT coding, one test per rule (R9-R28) and decision (D3-D13).

Expectations are the worked scenarios of coding-rules.md §2 where one applies
(named in the test), with the arithmetic in the docstring.
"""

from __future__ import annotations

from adapter.core.holds import HoldReason
from adapter.core.mappings import Setting
from adapter.core.model import AdminStatus, Method, Route
from adapter.core.options import CodingOptions, MidnightDating
from tests.coding_support import DAY, admin, base_fluid, code, dated, lines, push

HOPD = Setting.HOSPITAL_OUTPATIENT


def admin_lines(coded) -> dict[str, int]:  # type: ignore[no-untyped-def]
    return {k: v for k, v in lines(coded).items() if k[0].isdigit() or k.startswith("G")}


def holds(coded) -> set[str]:  # type: ignore[no-untyped-def]
    return {h.reason.value for h in coded.holds}


# --- R9 / D4: push vs infusion -------------------------------------------------------------


def test_s01_zoledronic_acid_over_15_minutes_is_a_push_96374_r9() -> None:
    coded = code(admin("J3489", "4 mg", "10:00", "10:15"), diagnoses=("C79.51", "C50.911"))
    assert admin_lines(coded) == {"96374": 1}


def test_s02_zoledronic_acid_over_16_minutes_is_an_infusion_96365_r18() -> None:
    coded = code(admin("J3489", "4 mg", "10:00", "10:16"), diagnoses=("C79.51", "C50.911"))
    assert admin_lines(coded) == {"96365": 1}


def test_documented_push_stays_a_push_whatever_the_minutes_d4() -> None:
    coded = code(admin("J3489", "4 mg", "10:00", "10:40", method=Method.PUSH))
    assert admin_lines(coded) == {"96374": 1}


# --- R18: initial infusion and additional hours ----------------------------------------------


def test_s03_chemo_infusion_of_90_minutes_bills_96413_only() -> None:
    coded = code(admin("J9206", "342 mg", "09:00", "10:30"))
    assert admin_lines(coded) == {"96413": 1}


def test_s04_chemo_infusion_of_91_minutes_bills_one_additional_hour() -> None:
    coded = code(admin("J9206", "342 mg", "09:00", "10:31"))
    assert admin_lines(coded) == {"96413": 1, "96415": 1}


def test_therapeutic_infusion_initial_96365_with_96366_additional_hours_r18() -> None:
    coded = code(admin("J3489", "4 mg", "10:00", "11:35"))  # 95 min -> ADD 1
    assert admin_lines(coded) == {"96365": 1, "96366": 1}


# --- R13 / R14 / D3: one initial, chosen by hierarchy ---------------------------------------


def test_s05_two_chemo_infusions_of_120_minutes_bill_initial_sequential_and_two_hours_r19() -> None:
    coded = code(
        admin("J9206", "342 mg", "09:00", "11:00"), admin("J9263", "135 mg", "11:00", "13:00")
    )
    assert admin_lines(coded) == {"96413": 1, "96417": 1, "96415": 2}


def test_s07_chemo_is_initial_even_after_an_earlier_therapeutic_infusion_r14() -> None:
    coded = code(
        admin("J1453", "150 mg", "09:00", "09:30"), admin("J9206", "342 mg", "09:30", "11:25")
    )
    assert admin_lines(coded) == {"96413": 1, "96415": 1, "96367": 1}


def test_one_initial_code_per_encounter_r13_first_push_after_chemo_is_96375() -> None:
    coded = code(push("J2405", "8 mg", "08:30"), admin("J9206", "342 mg", "09:00", "10:00"))
    assert admin_lines(coded) == {"96413": 1, "96375": 1}


def test_hierarchy_makes_therapeutic_push_initial_over_hydration_r14_s23() -> None:
    """S23: ondansetron IVP + NS 23:48-01:30 (102 min) -> 96374 + 96361 x2."""
    coded = code(
        push("J2405", "8 mg", "23:00"),
        admin("J7030", "1000 mL", "23:48", "01:30", indicated=True, end_day=16),
        setting=HOPD,
    )
    assert admin_lines(coded) == {"96374": 1, "96361": 2}


def test_s23_hydration_units_crossing_midnight_are_dated_by_their_block_d9() -> None:
    """D9 reading of S23: block 1 starts 23:48 on the 15th, block 2 at 00:48 on the 16th."""
    coded = code(
        push("J2405", "8 mg", "23:00"),
        admin("J7030", "1000 mL", "23:48", "01:30", indicated=True, end_day=16),
        setting=HOPD,
    )
    by_date = dated(coded)
    assert by_date["96361", DAY] == 1
    assert by_date["96361", DAY.replace(day=16)] == 1


def test_s24_rituximab_crossing_midnight_keeps_one_initial_and_dates_hours_per_block_r17_d9() -> (
    None
):
    coded = code(admin("J9312", "700 mg", "22:00", "01:40", end_day=16), setting=HOPD)
    by_date = dated(coded)
    assert by_date["96413", DAY] == 1
    assert by_date["96415", DAY] == 1
    assert by_date["96415", DAY.replace(day=16)] == 2
    assert admin_lines(coded) == {"96413": 1, "96415": 3}


def test_midnight_dating_option_puts_all_hours_on_the_start_date_ambiguity_5() -> None:
    options = CodingOptions(setting_override=HOPD, midnight_dating=MidnightDating.START_DATE)
    coded = code(admin("J9312", "700 mg", "22:00", "01:40", end_day=16), options=options)
    assert dated(coded)["96415", DAY] == 3


# --- R19 / R25 / D6 / D7: sequential vs concurrent -------------------------------------------


def test_s06_premeds_chemo_and_hydration_sequence() -> None:
    """S06: 3 premed infusions (20/20/30 min) -> 96367 x3; doxorubicin 155 min -> 96413 + 96415 x2;
    NS 75 min with an indication -> 96361 x1."""
    coded = code(
        admin("J2469", "0.25 mg", "13:00", "13:20"),
        admin("J1100", "12 mg", "13:20", "13:40"),
        admin("J1453", "150 mg", "13:40", "14:10"),
        admin("J9206", "300 mg", "14:10", "16:45"),
        admin("J7030", "1000 mL", "16:45", "18:00", indicated=True),
    )
    assert admin_lines(coded) == {"96413": 1, "96415": 2, "96367": 3, "96361": 1}


def test_s08_therapeutic_infusion_concurrent_with_chemo_bills_96368_r25() -> None:
    coded = code(
        admin("J9263", "135 mg", "09:33", "12:15"), admin("J0640", "632 mg", "09:33", "12:15")
    )
    assert admin_lines(coded) == {"96413": 1, "96368": 1, "96415": 2}


def test_s28_concurrent_96368_is_billed_once_per_encounter_r25() -> None:
    coded = code(
        admin("J9263", "170 mg", "09:00", "11:00"),
        admin("J0640", "800 mg", "09:00", "11:00"),
        admin("J1453", "150 mg", "09:00", "09:30"),
        setting=HOPD,
    )
    assert admin_lines(coded) == {"96413": 1, "96415": 1, "96368": 1}


def test_overlap_under_16_minutes_is_sequential_not_concurrent_d6() -> None:
    coded = code(
        admin("J9206", "342 mg", "09:00", "10:00"), admin("J1453", "150 mg", "09:45", "10:30")
    )
    assert admin_lines(coded) == {"96413": 1, "96367": 1}


def test_overlap_of_16_minutes_is_concurrent_d6() -> None:
    coded = code(
        admin("J9206", "342 mg", "09:00", "10:00"), admin("J1453", "150 mg", "09:44", "10:30")
    )
    assert admin_lines(coded) == {"96413": 1, "96368": 1}


def test_concurrent_chemotherapy_with_chemotherapy_is_held_d7() -> None:
    coded = code(
        admin("J9206", "342 mg", "09:00", "10:00"), admin("J9263", "135 mg", "09:00", "10:00")
    )
    assert HoldReason.CONCURRENT_CHEMOTHERAPY.value in holds(coded)


def test_s09_rchop_like_day_codes_every_family() -> None:
    """S09: 96413, 96415 x4 (312 min), 96417 (43 min), 96411 x2, 96367, 96368, 96375 x3."""
    coded = code(
        push("J1200", "25 mg", "08:14"),
        push("J2469", "0.25 mg", "08:14"),
        admin("J1453", "150 mg", "08:19", "08:45"),
        admin("J9312", "375 mg", "09:03", "14:15"),
        push("J1100", "12 mg", "09:06"),
        admin("J2405", "8 mg", "10:40", "11:10"),
        push("J9206", "50 mg", "14:35"),
        admin("J9263", "2 mg", "14:46", "14:56"),
        admin("J9060", "750 mg", "15:13", "15:56"),
        diagnoses=("C83.30",),
    )
    assert admin_lines(coded) == {
        "96413": 1, "96415": 4, "96417": 1, "96411": 2, "96367": 1, "96368": 1, "96375": 3,
    }  # fmt: skip


# --- R23 / R24: pushes ----------------------------------------------------------------------


def test_second_push_of_the_same_chemo_drug_has_no_code_r23() -> None:
    coded = code(push("J9206", "50 mg", "09:00"), push("J9206", "50 mg", "09:40"))
    assert admin_lines(coded) == {"96409": 1}


def test_chemo_push_of_a_different_drug_is_96411_r23() -> None:
    coded = code(push("J9206", "50 mg", "09:00"), push("J9263", "50 mg", "09:10"))
    assert admin_lines(coded) == {"96409": 1, "96411": 1}


def test_s30_repeat_push_of_the_same_drug_after_30_minutes_is_96376_in_facility_only_r24() -> None:
    scenario = (admin("J9206", "342 mg", "08:00", "08:50"), push("J2405", "8 mg", "09:00"),
                push("J2405", "8 mg", "10:00"))  # fmt: skip
    assert admin_lines(code(*scenario, setting=HOPD)) == {"96413": 1, "96375": 1, "96376": 1}
    assert admin_lines(code(*scenario, setting=Setting.OFFICE)) == {"96413": 1, "96375": 1}


def test_repeat_push_within_30_minutes_bills_nothing_r24() -> None:
    coded = code(admin("J9206", "342 mg", "08:00", "08:50"), push("J2405", "8 mg", "09:00"),
                 push("J2405", "8 mg", "09:30"), setting=HOPD)  # fmt: skip
    assert admin_lines(coded) == {"96413": 1, "96375": 1}


# --- R7 / R20 / R21 / R25 / D12: hydration --------------------------------------------------


def test_s33_hydration_only_130_minutes_bills_96360_and_one_96361_r20() -> None:
    coded = code(admin("J7030", "1000 mL", "09:00", "11:10", indicated=True), setting=HOPD,
                 diagnoses=("E86.0", "T45.1X5A", "C18.7"))  # fmt: skip
    assert admin_lines(coded) == {"96360": 1, "96361": 1}


def test_s33b_hydration_of_30_minutes_is_not_reportable_nor_its_bag_r20_r38() -> None:
    coded = code(admin("J7030", "1000 mL", "09:00", "09:30", indicated=True), setting=HOPD)
    assert coded.lines == ()
    assert coded.skip_reason == "nothing billable"


def test_s13_hydration_concurrent_with_chemo_is_not_billed_only_the_remaining_time_r25() -> None:
    """NS 09:00-11:35 with gemcitabine 09:00-09:30: 125 minutes remain -> 96361 x2."""
    coded = code(
        admin("J7030", "1000 mL", "09:00", "11:35", indicated=True),
        admin("J9201", "1800 mg", "09:00", "09:30"),
        diagnoses=("C25.9", "E86.0"),
    )
    assert admin_lines(coded) == {"96413": 1, "96361": 2}


def test_s12_pre_and_post_hydration_around_chemo_bill_96361_each_r21() -> None:
    coded = code(
        admin("J7030", "1000 mL", "08:00", "09:00", indicated=True),
        admin("J9060", "140 mg", "09:00", "10:00"),
        admin("J7040", "500 mL", "10:00", "10:45", indicated=True),
        setting=HOPD,
        diagnoses=("C34.90",),
    )
    assert admin_lines(coded) == {"96413": 1, "96361": 2}


def test_s14_keep_vein_open_fluid_without_indication_is_never_billed_r7_d12() -> None:
    coded = code(
        admin("J9271", "200 mg", "10:00", "10:30", extra=(base_fluid("100"),)),
        admin("J7030", "250 mL", "09:55", "10:40", ndc=1),
        diagnoses=("C34.90",),
    )
    assert admin_lines(coded) == {"96413": 1}
    assert not any(ln.code.startswith("J70") for ln in coded.lines)


# --- R16 / D10a: separate access ------------------------------------------------------------


def test_s27_overlapping_infusions_at_two_access_sites_bill_second_initial_with_59_and_hold_r16_d10a() -> (
    None
):
    coded = code(
        admin("J9206", "342 mg", "10:00", "11:00", site="PORT"),
        admin("J9263", "135 mg", "10:00", "10:50", site="L ARM"),
    )
    assert admin_lines(coded) == {"96413": 1, "96413-59": 1}
    assert holds(coded) == {HoldReason.SEPARATE_ACCESS_REVIEW.value}


def test_no_documented_site_means_same_access_d10a() -> None:
    coded = code(
        admin("J9206", "342 mg", "10:00", "11:00", site="PORT"),
        admin("J9263", "135 mg", "11:00", "12:00"),
    )
    assert admin_lines(coded) == {"96413": 1, "96417": 1}
    assert not coded.holds


# --- R26 / R27 / D13: pumps; R28: injections --------------------------------------------------


def test_s20_chemo_by_portable_pump_is_96416_r26_d13() -> None:
    coded = code(
        admin("J9035", "400 mg", "09:00", "09:30"),
        admin("J9263", "170 mg", "09:35", "11:35"),
        admin("J0640", "800 mg", "09:35", "11:35"),
        push("J9190", "800 mg", "11:40"),
        admin("J9190", "4800 mg", "11:50", method=Method.PUMP),
    )
    assert admin_lines(coded) == {
        "96413": 1,
        "96417": 1,
        "96415": 1,
        "96368": 1,
        "96411": 1,
        "96416": 1,
    }


def test_chemo_ordered_for_more_than_8_hours_is_a_pump_d13() -> None:
    coded = code(admin("J9190", "4800 mg", "11:50", expected_minutes=46 * 60))
    assert admin_lines(coded) == {"96416": 1}


def test_s21_office_g0498_setting_replaces_96416_r27() -> None:
    options = CodingOptions(setting_override=Setting.OFFICE, pump_code_g0498=True)
    coded = code(admin("J9190", "4800 mg", "11:50", method=Method.PUMP), options=options)
    assert admin_lines(coded) == {"G0498": 1}


def test_s31_bortezomib_subcutaneous_is_96401_r28() -> None:
    coded = code(admin("J9041", "2.6 mg", "10:00", route=Route.SC), diagnoses=("C90.00",))
    assert admin_lines(coded) == {"96401": 1}


def test_s32_denosumab_subcutaneous_is_therapeutic_96372_r28_d11() -> None:
    coded = code(admin("J9171", "150 mg", "09:00", "10:00"), admin("J0897", "120 mg", "10:05", route=Route.SC),
                 diagnoses=("C61", "C79.51"))  # fmt: skip
    assert admin_lines(coded) == {"96413": 1, "96372": 1}


def test_hormonal_antineoplastic_injection_is_96402_r28() -> None:
    coded = code(admin("J9217", "22.5 mg", "10:00", route=Route.IM), diagnoses=("C61",))
    assert admin_lines(coded) == {"96402": 1}


# --- R32 / D5 / D8 / D10 / D23: documentation problems ----------------------------------------


def test_s25_missing_stop_time_emits_no_time_code_and_holds_r32_d5() -> None:
    coded = code(admin("J9045", "500 mg", "10:00"), diagnoses=("C56.9",))
    assert admin_lines(coded) == {}
    assert lines(coded)["J9045"] == 10
    assert holds(coded) == {HoldReason.MISSING_STOP_TIME.value}


def test_s26_stop_time_computed_from_rate_and_volume_d5() -> None:
    coded = code(
        admin("J9045", "500 mg", "10:00", rate="500 mL/h", volume="250 mL"), diagnoses=("C56.9",)
    )
    assert admin_lines(coded) == {"96413": 1}
    assert not coded.holds


def test_stopped_early_codes_documented_minutes_and_holds_r22_d8() -> None:
    coded = code(
        admin("J9312", "100 mg", "10:00", "10:05", status=AdminStatus.PARTIAL),
        diagnoses=("C83.30",),
    )
    assert admin_lines(coded) == {"96409": 1}
    assert holds(coded) == {HoldReason.INFUSION_STOPPED_EARLY.value}


def test_stop_before_start_is_held_as_invalid_times_d10() -> None:
    coded = code(admin("J9206", "342 mg", "10:00", "09:00"))
    assert holds(coded) == {HoldReason.INVALID_TIMES.value}
    assert admin_lines(coded) == {}


def test_infusion_longer_than_24_hours_without_pump_is_invalid_times_d10() -> None:
    coded = code(admin("J9206", "342 mg", "10:00", "10:30", end_day=16))
    assert holds(coded) == {HoldReason.INVALID_TIMES.value}


def test_not_done_administration_bills_nothing_d23() -> None:
    coded = code(admin("J9206", "342 mg", "10:00", "11:00", status=AdminStatus.NOT_DONE))
    assert coded.skip_reason == "nothing billable"


def test_in_progress_administration_at_close_is_held_d23() -> None:
    coded = code(admin("J9206", "342 mg", "10:00", "11:00", status=AdminStatus.IN_PROGRESS))
    assert HoldReason.ADMINISTRATION_IN_PROGRESS.value in holds(coded)


def test_inpatient_encounter_is_skipped_not_held_d2() -> None:
    from adapter.core.model import PatientClass

    coded = code(admin("J9206", "342 mg", "10:00", "11:00"), patient_class=PatientClass.INPATIENT)
    assert coded.skip_reason == "inpatient"
    assert coded.lines == ()


def test_unknown_drug_is_held_never_guessed_d14() -> None:
    coded = code(admin("J9999", "10 mg", "10:00", "11:00", ndc=None))
    assert holds(coded) == {HoldReason.UNKNOWN_DRUG.value}
    assert coded.lines == ()


# --- R4-R6, R10, R11, R15/D3: classes, time measurement, hierarchy in both settings ----------


def test_antiemetic_given_to_a_cancer_patient_is_therapeutic_not_chemotherapy_r4_r6() -> None:
    coded = code(admin("J2405", "8 mg", "09:00", "09:30"), diagnoses=("C18.7",))
    assert admin_lines(coded) == {"96365": 1}


def test_running_time_counts_whole_minutes_drip_to_drip_r10() -> None:
    """15 minutes 59 seconds is still 15 minutes: a push (seconds are charting noise)."""
    from dataclasses import replace
    from datetime import timedelta

    a = admin("J3489", "4 mg", "10:00", "10:15")
    coded = code(replace(a, end=a.end + timedelta(seconds=59)))  # type: ignore[operator]
    assert admin_lines(coded) == {"96374": 1}


def test_separate_short_infusions_are_not_added_together_r11() -> None:
    """Two 10-minute infusions of different drugs are two pushes, not one 20-minute infusion."""
    coded = code(
        admin("J2405", "8 mg", "09:00", "09:10"), admin("J1100", "12 mg", "09:10", "09:20")
    )
    assert admin_lines(coded) == {"96374": 1, "96375": 1}


def test_hierarchy_is_the_same_in_office_and_hospital_r14_r15_d3() -> None:
    """D3: R14's hierarchy in both settings; R15's office 'primary reason' override is off."""
    scenario = (
        admin("J1453", "150 mg", "09:00", "10:00"),
        admin("J9206", "342 mg", "10:00", "10:20"),
    )
    for setting in (Setting.OFFICE, HOPD):
        assert admin_lines(code(*scenario, setting=setting)) == {"96413": 1, "96367": 1}
