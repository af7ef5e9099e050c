"""Retain Safe Private: PS3.15 Table E.3.10-1 entries stay with their creator, all else goes."""

from __future__ import annotations

from io import BytesIO

import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

from oncofed.deid.profile import build_profile
from oncofed.deid.safe_private_table import EDITION, SAFE_PRIVATE
from oncofed.deid.stage import DeidStage

KEY = b"s" * 32
OPTIONS = ("retain-modified-dates", "retain-safe-private")


def test_table_is_the_generated_e3_10_1() -> None:
    assert EDITION == "2020b"
    assert len(SAFE_PRIVATE) == 130
    assert ("SIEMENS MR HEADER", 0x0019, 0x0C, "IS", "1", "K") in SAFE_PRIVATE
    assert ("GEMS_ACQU_01", 0x0019, 0x23, "DS", "1", "K") in SAFE_PRIVATE
    assert ("Philips MR Imaging DD 001", 0x2005, 0x0D, "FL", "1", "K") in SAFE_PRIVATE
    assert all(group & 1 and 0 <= element <= 0xFF for _, group, element, *_ in SAFE_PRIVATE)


def _file(transfer_syntax: str = ExplicitVRLittleEndian) -> bytes:
    ds = Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.4"
    ds.SOPInstanceUID = "1.2.826.0.1.3680043.10.999.77.1"
    ds.StudyInstanceUID = "1.2.826.0.1.3680043.10.999.77.2"
    ds.PatientID = "FAKEPRIVID77"
    ds.PatientName = "FAKEPRIVATE^PATIENT"
    ds.Modality = "MR"
    # Siemens in block 0x10 of group 0019: xx0C (B value) is listed, xx08 is not.
    ds.add_new(0x00190010, "LO", "SIEMENS MR HEADER")
    ds.add_new(0x0019100C, "IS", "4711")
    ds.add_new(0x00191008, "CS", "UNLISTEDA")
    # GE in block 0x11 of the same group: xx23 is listed (found through its own creator).
    ds.add_new(0x00190011, "LO", "GEMS_ACQU_01")
    ds.add_new(0x00191123, "DS", "8.25")
    ds.add_new(0x00191130, "LO", "UNLISTEDB")
    # Philips MR in group 2005, block 0x20: xx0D is listed.
    ds.add_new(0x20050020, "LO", "Philips MR Imaging DD 001")
    ds.add_new(0x2005200D, "FL", 2.5)
    # A listed element offset under the wrong creator, and the right creator in the wrong group.
    ds.add_new(0x00430010, "LO", "FAKEVENDOR")
    ds.add_new(0x00431027, "SH", "UNLISTEDC")
    ds.add_new(0x00210010, "LO", "SIEMENS MR HEADER")
    ds.add_new(0x0021100C, "IS", "9966")
    # Listed offset with a VR other than the table's (IS): not what the table describes.
    ds.add_new(0x00290010, "LO", "SIEMENS MR HEADER")
    ds.add_new(0x00290011, "LO", "GEMS_PARM_01")
    ds.add_new(0x00291127, "LO", "UNLISTEDD")  # GEMS_PARM_01 (0043,xx27) is SH in group 0043
    ds.add_new(0x00431127, "LO", "UNLISTEDE")  # creator of block 0x11 in 0043 is absent
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = transfer_syntax
    ds.file_meta = meta
    buffer = BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


@pytest.mark.parametrize("transfer_syntax", [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
def test_listed_safe_private_attributes_stay_and_all_others_go(transfer_syntax: str) -> None:
    stage = DeidStage(KEY, build_profile("basic", OPTIONS))
    data = stage.apply(_file(transfer_syntax), "private.dcm")
    for kept in (b"SIEMENS MR HEADER", b"4711", b"GEMS_ACQU_01", b"8.25"):
        assert kept in data
    for removed in (b"UNLISTED", b"FAKEVENDOR", b"9966", b"GEMS_PARM_01"):
        assert removed not in data
    ds = pydicom.dcmread(BytesIO(data))
    private = sorted(int(e.tag) for e in ds if e.tag.is_private)
    assert private == [0x00190010, 0x00190011, 0x0019100C, 0x00191123, 0x20050020, 0x2005200D]
    assert ds.private_block(0x0019, "SIEMENS MR HEADER")[0x0C].value == "4711"
    assert float(ds.private_block(0x2005, "Philips MR Imaging DD 001")[0x0D].value) == 2.5
    assert "113111" in {item.CodeValue for item in ds.DeidentificationMethodCodeSequence}


def test_without_the_option_every_private_attribute_goes() -> None:
    data = DeidStage(KEY, build_profile("basic", ["retain-modified-dates"])).apply(_file(), "p")
    assert not any(e.tag.is_private for e in pydicom.dcmread(BytesIO(data)))
    assert b"4711" not in data and b"SIEMENS" not in data


def test_operator_list_adds_to_the_table_and_identifying_private_values_are_caught() -> None:
    profile = build_profile("basic", OPTIONS, [("FAKEVENDOR", 0x0043, 0x27)])
    assert profile.is_safe_private("FAKEVENDOR", 0x0043, 0x1027, "SH")
    assert profile.is_safe_private("SIEMENS MR HEADER", 0x0019, 0x100C, None)
    assert not profile.is_safe_private("SIEMENS MR HEADER", 0x0019, 0x100C, "LO")
    assert not profile.is_safe_private("SIEMENS MR HEADER", 0x0021, 0x100C, "IS")
    data = DeidStage(KEY, profile).apply(_file(), "p")
    assert b"UNLISTEDC" in data  # listed by the operator: kept
    raw = pydicom.dcmread(BytesIO(_file()))
    raw[0x00431027].value = "FAKEPRIVID77"  # a "safe" element carrying the Patient ID
    buffer = BytesIO()
    raw.save_as(buffer)
    with pytest.raises(Exception, match="identifying values remain"):
        DeidStage(KEY, profile).apply(buffer.getvalue(), "leak.dcm")
