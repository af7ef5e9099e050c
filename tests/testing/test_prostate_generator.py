"""Synthetic prostate biopsies: ISUP rules, labels and sample sheet, site stains, determinism."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from oncofed.catalog.labels import read_label_csv
from oncofed.ingest.slides import read_sample_sheet
from oncofed.testing.prostate import (
    SITES,
    TextureBank,
    generate_prostate,
    gleason_score,
    grade_group,
    make_prostate_slide,
)
from oncofed.wsi.open import open_slide


@pytest.mark.parametrize(
    ("primary", "secondary", "group"),
    [(3, 3, 1), (3, 4, 2), (4, 3, 3), (4, 4, 4), (3, 5, 4), (5, 3, 4), (4, 5, 5), (5, 5, 5)],
)
def test_grade_groups_follow_isup_2014(primary: int, secondary: int, group: int) -> None:
    assert grade_group(primary, secondary) == group


def test_biopsy_rules_pick_most_extensive_and_highest_patterns() -> None:
    assert gleason_score({1: 1.0, 3: 0.0}) is None
    assert gleason_score({1: 0.5, 3: 0.3, 4: 0.1}) == (3, 4)
    assert gleason_score({3: 0.3, 4: 0.4}) == (4, 3)
    assert gleason_score({3: 0.5, 5: 0.001}) == (3, 5)  # higher grade counts in any amount
    assert gleason_score({4: 0.97, 3: 0.03}) == (4, 4)  # lower grade under 5% is not graded
    with pytest.raises(ValueError, match="3-5"):
        grade_group(2, 3)


def test_cohort_files_labels_and_sheet_agree(tmp_path: Path) -> None:
    cohort = generate_prostate(tmp_path, slides_per_site=6, sites=("site-a", "site-c"), seed=3)
    assert sorted(s.isup_grade for s in cohort.slides) == sorted([*range(6)] * 2)
    sheet = read_sample_sheet(cohort.sample_sheet)
    assert [row.path for row in sheet] == [s.path.resolve() for s in cohort.slides]
    assert all(row.patient_id.startswith("FAKE-PROS-") and row.body_part == "PROSTATE"
               for row in sheet)  # fmt: skip
    labels = {(r.patient_id, r.kind): r.value for r in read_label_csv(cohort.labels_csv)}
    for slide in cohort.slides:
        assert labels[(slide.patient_id, "isup_grade")] == str(slide.isup_grade)
        assert labels[(slide.patient_id, "malignant")] == str(slide.malignant)
        if slide.gleason is None:
            assert (slide.patient_id, "gleason") not in labels
            assert slide.pattern_areas[1] == pytest.approx(1.0)
        else:
            assert labels[(slide.patient_id, "gleason")] == "{}+{}".format(*slide.gleason)
            assert grade_group(*slide.gleason) == slide.isup_grade
            assert gleason_score(slide.pattern_areas) == slide.gleason
    with open_slide(cohort.slides[0].path) as opened:
        assert opened.dimensions == (2048, 1024) and opened.mpp == (0.25, 0.25)
        assert len(opened.levels) == 3


def test_same_seed_same_bytes_and_sites_differ_in_stain(tmp_path: Path) -> None:
    first = generate_prostate(tmp_path / "one", slides_per_site=2, seed=9)
    again = generate_prostate(tmp_path / "two", slides_per_site=2, seed=9)
    digest = [hashlib.sha256(s.path.read_bytes()).hexdigest() for s in first.slides]
    assert digest == [hashlib.sha256(s.path.read_bytes()).hexdigest() for s in again.slides]
    textures = {name: TextureBank(site, seed=1).at(1)[1:].astype(float)
                for name, site in SITES.items()}  # fmt: skip
    assert len(SITES) == 3
    for name in ("site-b", "site-c"):
        mean_difference = np.abs(textures[name].mean(axis=(1, 2, 3)) - textures["site-a"].mean(
            axis=(1, 2, 3))).mean()  # fmt: skip
        assert mean_difference > 10, name  # grey levels apart, per pattern, on average


def test_patterns_differ_in_how_much_is_stained() -> None:
    bank = TextureBank(SITES["site-a"], seed=0).at(1).astype(float)
    darkness = [float((255 - bank[index]).mean()) for index in (1, 2, 3, 4)]
    benign, pattern3, pattern4, pattern5 = darkness
    assert benign < pattern3 < pattern5 and pattern4 < pattern5  # lumens give way to sheets


def test_big_slides_are_drawn_tile_by_tile(tmp_path: Path) -> None:
    slide = make_prostate_slide(tmp_path / "big.svs", isup_grade=4, width=12_000, height=9_000,
                                seed=2)  # fmt: skip
    assert slide.isup_grade == 4 and slide.gleason is not None
    with open_slide(slide.path) as opened:
        assert opened.dimensions == (12_000, 9_000)
        region = opened.read_region(0, 0, len(opened.levels) - 1, 64, 64)
        assert region.shape == (64, 64, 3)


def test_bad_arguments_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown sites"):
        generate_prostate(tmp_path, sites=("site-z",))
    with pytest.raises(ValueError, match="grade group 6"):
        make_prostate_slide(tmp_path / "x.svs", isup_grade=6, width=1024, height=512)
    assert not (tmp_path / "x.svs").exists()
