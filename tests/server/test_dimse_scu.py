"""The DIMSE SCP's edge cases, driven by pynetdicom's SCU: statuses, matching, access control."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
from dimse_support import FAR_AET, SCP_AET, SCU_AET, ServedScp, empty_scp, scp
from pydicom import dcmread
from pydicom.dataset import Dataset
from pynetdicom import AE, sop_class
from pynetdicom.association import Association

from oncofed.errors import ConfigError
from oncofed.server.dimse import (
    FIND_MODELS,
    GET_MODELS,
    MOVE_MODELS,
    VERIFICATION,
    DimseServer,
    parse_peer,
)
from oncofed.testing.dicom import generate_cohort

__all__ = ["empty_scp", "scp"]  # fixtures

PATIENT_FIND = sop_class.PatientRootQueryRetrieveInformationModelFind
STUDY_FIND = sop_class.StudyRootQueryRetrieveInformationModelFind
STUDY_GET = sop_class.StudyRootQueryRetrieveInformationModelGet
STUDY_MOVE = sop_class.StudyRootQueryRetrieveInformationModelMove


def associate(scp: ServedScp, *contexts: str, aet: str = SCU_AET) -> Association:
    ae = AE(aet)
    for context in contexts or (VERIFICATION,):
        ae.add_requested_context(context)
    return ae.associate("127.0.0.1", scp.port, ae_title=SCP_AET)


@pytest.fixture(scope="module")
def finder(scp: ServedScp) -> Iterator[Association]:
    assoc = associate(scp, PATIENT_FIND, STUDY_FIND, STUDY_GET, STUDY_MOVE)
    assert assoc.is_established
    yield assoc
    assoc.release()


def query(level: str, **keys: object) -> Dataset:
    ds = Dataset()
    ds.QueryRetrieveLevel = level
    for keyword, value in keys.items():
        setattr(ds, keyword, value)
    return ds


def cfind(assoc: Association, identifier: Dataset, model: str = STUDY_FIND) -> list[Dataset]:
    """The pending answers; fails unless the final status is success."""
    answers, final = [], None
    for status, answer in assoc.send_c_find(identifier, model):
        if status.Status in (0xFF00, 0xFF01):
            answers.append(answer)
        else:
            final = status
    assert final is not None and final.Status == 0x0000, final
    return answers


def final_status(responses: Iterator[tuple[Dataset, Dataset | None]]) -> Dataset:
    return list(responses)[-1][0]


def test_information_models_are_pynetdicoms() -> None:
    assert sop_class.Verification == VERIFICATION
    assert set(FIND_MODELS) == {PATIENT_FIND, STUDY_FIND}
    assert set(GET_MODELS) == {sop_class.PatientRootQueryRetrieveInformationModelGet, STUDY_GET}
    assert set(MOVE_MODELS) == {sop_class.PatientRootQueryRetrieveInformationModelMove, STUDY_MOVE}


def test_parse_peer() -> None:
    assert parse_peer("PACS=10.0.0.5:104") == ("PACS", ("10.0.0.5", 104))
    for bad in ("PACS", "PACS=host", "PACS=host:0", "=host:104", "A_TITLE_LONGER_THAN_16=h:1"):
        with pytest.raises(ConfigError):
            parse_peer(bad)


def test_an_invalid_ae_title_is_a_config_error(scp: ServedScp) -> None:
    with pytest.raises(ConfigError, match="AE title"):
        DimseServer(scp.service, peers={}, ae_title="BACK\\SLASH")


@pytest.mark.parametrize("aet", ["INTRUDER", FAR_AET])
def test_unknown_callers_are_rejected(scp: ServedScp, aet: str) -> None:
    assoc = associate(scp, aet=aet)
    assert assoc.is_rejected and not assoc.is_established


def test_unknown_sop_class_is_not_accepted(empty_scp: ServedScp) -> None:
    assoc = associate(empty_scp, VERIFICATION, "1.2.826.0.1.3680043.9.9999.1")
    try:
        assert [cx.abstract_syntax for cx in assoc.rejected_contexts] == [
            "1.2.826.0.1.3680043.9.9999.1"
        ]
        assert assoc.send_c_echo().Status == 0x0000
    finally:
        assoc.release()


def test_store_statuses(empty_scp: ServedScp, tmp_path: Path) -> None:
    cohort = generate_cohort(tmp_path, patients=1, seed=5)
    good = dcmread(cohort.files[0])
    truncated = dcmread(cohort.files[0])
    truncated.SOPInstanceUID += ".9"
    truncated.PixelData = truncated.PixelData[:100]
    changed = dcmread(cohort.files[0])
    changed.PixelData = bytes(len(changed.PixelData))
    assoc = associate(empty_scp, good.SOPClassUID)
    try:
        assert assoc.send_c_store(good).Status == 0x0000
        assert assoc.send_c_store(good).Status == 0x0000  # already present
        refused = assoc.send_c_store(truncated)
        assert refused.Status == 0xC000
        assert refused.ErrorComment.startswith("pixel data truncated")
        duplicate = assoc.send_c_store(changed)
        assert duplicate.Status == 0x0111 and duplicate.ErrorComment
    finally:
        assoc.release()
    assert empty_scp.scalar("SELECT count(*) FROM instance") == 1


def test_find_wildcards_names_and_uid_lists(scp: ServedScp, finder: Association) -> None:
    pseudonym = str(scp.rows("SELECT min(pseudo_id) FROM patient")[0][0])
    prefix = cfind(finder, query("PATIENT", PatientID=pseudonym[:7] + "*"), PATIENT_FIND)
    like = scp.scalar("SELECT count(*) FROM patient WHERE pseudo_id LIKE ?", [pseudonym[:7] + "%"])
    assert len(prefix) == like and pseudonym in {a.PatientID for a in prefix}
    name = pseudonym.lower()[:-1] + "?"  # PN matching ignores case
    assert [
        a.PatientID for a in cfind(finder, query("PATIENT", PatientName=name), PATIENT_FIND)
    ] == [pseudonym]
    studies = sorted(str(r[0]) for r in scp.rows("SELECT study_uid FROM study"))[:2]
    answers = cfind(finder, query("STUDY", StudyInstanceUID=studies, PatientID=""))
    assert sorted(a.StudyInstanceUID for a in answers) == studies
    assert cfind(finder, query("STUDY", PatientID="x' OR '1'='1")) == []


def test_find_modalities_and_image_level(scp: ServedScp, finder: Association) -> None:
    modality = str(scp.rows("SELECT min(modality) FROM series")[0][0])
    answers = cfind(finder, query("STUDY", ModalitiesInStudy=modality, StudyInstanceUID=""))
    expected = scp.scalar(
        "SELECT count(DISTINCT study_key) FROM series WHERE modality = ?", [modality]
    )
    assert len(answers) == expected and all(modality in a.ModalitiesInStudy for a in answers)
    series = str(scp.rows("SELECT min(series_uid) FROM series")[0][0])
    keys = {"SeriesInstanceUID": series, "SOPInstanceUID": "", "SOPClassUID": "", "Rows": None}
    images = cfind(finder, query("IMAGE", **keys))
    count = scp.scalar("SELECT instance_count FROM series WHERE series_uid = ?", [series])
    assert len(images) == count and all(a.Rows == 64 and a.SOPClassUID for a in images)


def test_find_keys_the_catalog_does_not_hold(finder: Association) -> None:
    series = cfind(finder, query("SERIES", SeriesNumber=None, SeriesInstanceUID=""))
    assert series and all(a.SeriesNumber is not None for a in series)  # from stored headers
    assert cfind(finder, query("STUDY", AccessionNumber="A123")) == []  # removed by de-id


@pytest.mark.parametrize(
    ("level", "keys", "status", "comment"),
    [
        ("PATIENT", {"PatientID": ""}, 0xA900, "QueryRetrieveLevel must be one of"),
        ("", {"PatientID": ""}, 0xA900, "QueryRetrieveLevel must be one of"),
        ("STUDY", {"StudyDate": "20711345"}, 0xC000, "StudyDate: not a date"),
        ("STUDY", {"StudyDate": "-"}, 0xC000, "StudyDate: empty date range"),
    ],
)
def test_find_refuses_bad_identifiers(
    finder: Association, level: str, keys: dict[str, str], status: int, comment: str
) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom warns about invalid (and ranged) dates
        final = final_status(finder.send_c_find(query(level, **keys), STUDY_FIND))
    assert final.Status == status and final.ErrorComment.startswith(comment)


def test_retrieve_needs_the_unique_key(finder: Association) -> None:
    final = final_status(finder.send_c_get(query("STUDY", PatientID="x"), STUDY_GET))
    assert final.Status == 0xA900 and "StudyInstanceUID" in final.ErrorComment


def test_move_to_an_unknown_destination(finder: Association) -> None:
    identifier = query("STUDY", StudyInstanceUID="1.2.3")
    assert final_status(finder.send_c_move(identifier, "NOBODY", STUDY_MOVE)).Status == 0xA801
