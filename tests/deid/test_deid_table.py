"""The generated Annex E table and how options resolve into effective actions."""

from __future__ import annotations

import pytest

from oncofed.deid.annex_e_table import EDITION, EXACT, MASKED, PRIVATE
from oncofed.deid.profile import ProfileError, build_profile

PATIENT_NAME, STUDY_DATE, STUDY_UID = 0x00100010, 0x00080020, 0x0020000D
STUDY_DESCRIPTION, DEVICE_SERIAL, CONTENT_DATE = 0x00081030, 0x00181000, 0x00080023


def test_table_is_the_full_generated_e1_1() -> None:
    assert EDITION == "2024b"
    assert len(EXACT) + len(MASKED) + 1 == 621
    assert EXACT[PATIENT_NAME][1] == "Z"
    assert EXACT[STUDY_UID][1] == "U"
    assert PRIVATE[1] == "X"
    codes = {rule[1] for rule in EXACT.values()}
    assert {"D", "Z", "X", "U", "X/Z", "X/D", "Z/D", "X/Z/D", "X/Z/U*"} <= codes


def test_basic_profile_resolves_combined_codes() -> None:
    profile = build_profile()
    assert profile.action(PATIENT_NAME) == "Z"
    assert profile.action(STUDY_DATE) == "Z"
    assert profile.action(CONTENT_DATE) == "D"  # Z/D
    assert profile.action(DEVICE_SERIAL) == "D"  # X/Z/D
    assert profile.action(STUDY_DESCRIPTION) == "X"
    assert profile.action(0x60023000) == "X"  # overlay data in a repeating group
    assert profile.action(0x00280010) is None  # Rows: not listed, kept


def test_options_override_basic_actions() -> None:
    profile = build_profile(
        "basic", ["retain-dates", "clean-descriptors", "retain-device-id", "retain-safe-private"]
    )
    assert profile.options == (
        "retain-safe-private",
        "retain-device-identity",
        "retain-modified-dates",
        "clean-descriptors",
    )
    assert profile.action(STUDY_DATE) == "C"
    assert profile.action(STUDY_DESCRIPTION) == "C"
    assert profile.action(DEVICE_SERIAL) == "K"
    assert profile.action(0x00080024) == "C"  # an unlisted date follows Study Date
    assert profile.keep_private


@pytest.mark.parametrize(
    ("name", "options", "message"),
    [
        ("basic", ["retain-everything"], "unknown de-identification option 'retain-everything'"),
        ("basic", ["retain-full-dates", "retain-dates"], "exclude each other"),
        ("strict", [], "unknown de-identification profile 'strict'"),
    ],
)
def test_bad_profiles_are_refused(name: str, options: list[str], message: str) -> None:
    with pytest.raises(ProfileError, match=message):
        build_profile(name, options)
