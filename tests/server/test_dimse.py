"""The DIMSE SCP against real dcmtk tools: echoscu, storescu, findscu, getscu, movescu."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from dimse_support import (
    DEST_AET,
    FAR_AET,
    SCP_AET,
    SCU_AET,
    ServedScp,
    empty_scp,
    scp,
)
from pydicom import dcmread
from pydicom.dataset import Dataset

from oncofed.testing.dicom import generate_cohort

__all__ = ["empty_scp", "scp"]  # fixtures

TOOLS = ("echoscu", "storescu", "findscu", "getscu", "movescu", "storescp")
# pynetdicom installs Python look-alikes of these tools into the virtual environment; the
# tests want dcmtk's, so the environment's own bin folder is left out of the search.
_SEARCH = os.pathsep.join(
    p for p in os.environ.get("PATH", "").split(os.pathsep) if Path(p) != Path(sys.prefix) / "bin"
)
DCMTK = {tool: shutil.which(tool, path=_SEARCH) for tool in TOOLS}
pytestmark = pytest.mark.skipif(
    None in DCMTK.values(),
    reason="dcmtk command-line tools are not installed (apt-get install dcmtk)",
)


def dcmtk(
    tool: str, port: int, *options: str, aet: str = SCU_AET, files: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    """Run a dcmtk SCU against the SCP on 127.0.0.1."""
    command = [str(DCMTK[tool]), "-aet", aet, "-aec", SCP_AET, *options, "127.0.0.1", str(port)]
    command += files
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)


def find(scp: ServedScp, out: Path, model: str, *keys: str) -> list[Dataset]:
    """findscu with ``keys``; the responses, read back from the files it extracted."""
    out.mkdir()
    args = [model, "-X", "-od", str(out)]
    for key in keys:
        args += ["-k", key]
    result = dcmtk("findscu", scp.port, *args)
    assert result.returncode == 0, result.stderr
    return [dcmread(path) for path in sorted(out.glob("rsp*.dcm"))]


def planted_values(scp: ServedScp) -> set[str]:
    assert scp.cohort is not None
    return {value for values in scp.cohort.identifiers.values() for value in values}


def assert_deidentified(paths: list[Path], planted: set[str]) -> None:
    assert paths and planted
    for path in paths:
        data = path.read_bytes()
        assert [value for value in planted if value.encode() in data] == [], path


def test_echoscu_from_a_peer_succeeds(scp: ServedScp) -> None:
    result = dcmtk("echoscu", scp.port)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("aet", ["INTRUDER", FAR_AET])
def test_unknown_ae_or_wrong_host_is_rejected(scp: ServedScp, aet: str) -> None:
    before = scp.scalar("SELECT count(*) FROM audit WHERE action = 'dimse.reject'")
    result = dcmtk("echoscu", scp.port, aet=aet)
    assert result.returncode != 0
    assert "Calling AE Title Not Recognized" in result.stdout + result.stderr
    after = scp.scalar("SELECT count(*) FROM audit WHERE action = 'dimse.reject'")
    assert after == int(str(before)) + 1


def test_storescu_stores_deidentified_copies(empty_scp: ServedScp, tmp_path: Path) -> None:
    cohort = generate_cohort(tmp_path / "in", patients=2, seed=22)
    result = dcmtk("storescu", empty_scp.port, "+sd", "+r", files=(str(tmp_path / "in"),))
    assert result.returncode == 0, result.stderr
    with empty_scp.service.catalog() as catalog:
        counts = catalog.query({"collection": ["received"]}).counts
    assert (counts.patients, counts.studies, counts.series, counts.instances) == (
        cohort.patients,
        cohort.studies,
        cohort.series,
        cohort.instances,
    )
    # one association: one report and one audit entry, written before storescu saw the release
    assert len(list(empty_scp.service.node.reports_dir.glob("ingest-*.json"))) == 1
    audited = empty_scp.rows("SELECT actor, details FROM audit WHERE action = 'ingest'")
    assert len(audited) == 1 and str(audited[0][0]).startswith(f"dimse:{SCU_AET}@")
    assert f'"added": {cohort.instances}' in str(audited[0][1])
    shas = empty_scp.rows("SELECT sha256 FROM instance")
    blobs = [empty_scp.service.blob_path(str(row[0])) for row in shas]
    planted = {value for values in cohort.identifiers.values() for value in values}
    assert_deidentified(blobs, planted)


def test_findscu_patient_level(scp: ServedScp, tmp_path: Path) -> None:
    assert scp.cohort is not None
    keys = ["QueryRetrieveLevel=PATIENT", "PatientID", "PatientName", "PatientSex"]
    answers = find(scp, tmp_path / "rsp", "-P", *keys, "NumberOfPatientRelatedStudies")
    assert len(answers) == scp.cohort.patients
    assert sum(int(a.NumberOfPatientRelatedStudies) for a in answers) == scp.cohort.studies
    planted = planted_values(scp)
    for answer in answers:
        assert answer.PatientID.startswith("ANON") and answer.PatientID not in planted
        assert str(answer.PatientName) == answer.PatientID
        assert answer.PatientSex in ("M", "F", "O")


def test_findscu_study_level_with_date_range(scp: ServedScp, tmp_path: Path) -> None:
    assert scp.cohort is not None
    keys = ["QueryRetrieveLevel=STUDY", "StudyInstanceUID", "StudyDate", "PatientID"]
    keys += ["ModalitiesInStudy", "NumberOfStudyRelatedInstances", "StudyTime"]
    answers = find(scp, tmp_path / "all", "-S", *keys)
    assert len(answers) == scp.cohort.studies
    assert sum(int(a.NumberOfStudyRelatedInstances) for a in answers) == scp.cohort.instances
    assert all(a.StudyTime and a.ModalitiesInStudy for a in answers)  # header and aggregate
    assert not {a.StudyInstanceUID for a in answers} & planted_values(scp)
    dates = sorted(a.StudyDate for a in answers)
    low, high = dates[1], dates[-2]
    ranged = find(scp, tmp_path / "range", "-S", *keys[:-1], f"StudyDate={low}-{high}")
    assert len(ranged) == sum(low <= d <= high for d in dates)


def test_findscu_series_level_by_modality(scp: ServedScp, tmp_path: Path) -> None:
    assert scp.cohort is not None
    by_modality = scp.cohort.by_modality
    modality = max(by_modality, key=lambda m: by_modality[m])
    keys = ["QueryRetrieveLevel=SERIES", "SeriesInstanceUID", f"Modality={modality}"]
    answers = find(scp, tmp_path / "rsp", "-S", *keys, "NumberOfSeriesRelatedInstances")
    assert len(answers) == by_modality[modality]
    assert {a.Modality for a in answers} == {modality}
    assert all(int(a.NumberOfSeriesRelatedInstances) >= 1 for a in answers)


UNDER = {"STUDY": "st.study_uid", "SERIES": "s.series_uid", "IMAGE": "i.sop_uid"}


def sop_uids(scp: ServedScp, level: str, uid: str) -> set[str]:
    """The SOP Instance UIDs the catalog holds under a study, series or instance UID."""
    sql = (
        "SELECT i.sop_uid FROM instance i JOIN series s USING (series_key)"
        f" JOIN study st USING (study_key) WHERE {UNDER[level]} = ?"
    )
    return {str(row[0]) for row in scp.rows(sql, [uid])}


def multi_instance_series(scp: ServedScp) -> tuple[str, str, str]:
    """(study, series, first SOP Instance UID) of a series with several instances."""
    row = scp.rows(
        "SELECT st.study_uid, s.series_uid, min(i.sop_uid) FROM instance i"
        " JOIN series s USING (series_key) JOIN study st USING (study_key)"
        " GROUP BY ALL HAVING count(*) > 1 ORDER BY 2"
    )[0]
    return str(row[0]), str(row[1]), str(row[2])


@pytest.mark.parametrize("level", ["STUDY", "SERIES", "IMAGE"])
def test_getscu_retrieves_deidentified_instances(
    scp: ServedScp, tmp_path: Path, level: str
) -> None:
    uids = multi_instance_series(scp)
    keys = ["StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"]
    depth = list(UNDER).index(level) + 1
    args = ["-S", "-od", str(tmp_path), "-k", f"QueryRetrieveLevel={level}"]
    for key, uid in zip(keys[:depth], uids[:depth], strict=True):
        args += ["-k", f"{key}={uid}"]
    result = dcmtk("getscu", scp.port, *args)
    assert result.returncode == 0, result.stderr
    received = sorted(tmp_path.iterdir())
    expected = sop_uids(scp, level, uids[depth - 1])
    assert len(expected) == 1 if level == "IMAGE" else len(expected) > 1
    assert {dcmread(path).SOPInstanceUID for path in received} == expected
    assert_deidentified(received, planted_values(scp))


@pytest.fixture
def storescp(scp: ServedScp, tmp_path: Path) -> Iterator[Path]:
    """A dcmtk storage SCP listening as DEST; yields the folder it writes to."""
    out = tmp_path / "dest"
    out.mkdir()
    command = [str(DCMTK["storescp"]), "-aet", DEST_AET, "+xa", "-od", str(out), str(scp.dest_port)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", scp.dest_port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "storescp did not start"
                time.sleep(0.05)
        yield out
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_movescu_sends_a_series_to_a_configured_destination(scp: ServedScp, storescp: Path) -> None:
    study, series, _ = multi_instance_series(scp)
    args = ["-S", "-aem", DEST_AET, "-k", "QueryRetrieveLevel=SERIES"]
    args += ["-k", f"StudyInstanceUID={study}", "-k", f"SeriesInstanceUID={series}"]
    result = dcmtk("movescu", scp.port, *args)
    assert result.returncode == 0, result.stderr
    received = sorted(storescp.iterdir())
    expected = sop_uids(scp, "SERIES", series)
    assert len(expected) > 1
    assert {dcmread(path).SOPInstanceUID for path in received} == expected
    assert_deidentified(received, planted_values(scp))
    audited = scp.scalar("SELECT count(*) FROM audit WHERE action = 'dimse.move'")
    assert int(str(audited)) >= 1


def test_movescu_to_an_unknown_destination_fails(scp: ServedScp) -> None:
    study = str(scp.rows("SELECT study_uid FROM study")[0][0])
    args = ["-S", "-aem", "NOBODY", "-k", "QueryRetrieveLevel=STUDY"]
    result = dcmtk("movescu", scp.port, *args, "-k", f"StudyInstanceUID={study}", "-v")
    assert "Refused: MoveDestinationUnknown" in result.stdout + result.stderr
