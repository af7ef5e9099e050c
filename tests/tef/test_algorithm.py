"""Algorithm packages: manifest checks, ONNX graph against manifest, dry run, package hash."""

from __future__ import annotations

import io
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
from tef_support import FAST, SIZE, lesion_images, python_package, write_manifest

from oncofed.tef.algorithm import (
    AlgorithmError,
    load_package,
    package_sha256,
    run_algorithm,
    unpack_package,
    validate_package,
)


def test_onnx_package_validates_and_separates_lesions(onnx_package: Path, tmp_path: Path) -> None:
    report = validate_package(onnx_package, limits=FAST, work_root=tmp_path)
    assert report.graph["inputs"] == [
        {"name": "image", "shape": [None, 1, SIZE, SIZE], "type": "tensor(float)"}
    ]
    assert report.dry_run_shape == (2, 2)
    assert report.package.sha256 == package_sha256(onnx_package)
    labels = np.array([0, 1, 0, 1, 1, 0])
    images = lesion_images(labels, seed=7)[:, None]
    run = run_algorithm(report.package, [images], limits=FAST, work_root=tmp_path)
    assert (run.outputs[0][:, 1] > 0.5).astype(int).tolist() == labels.tolist()


def copy_with_manifest(source: Path, target: Path, edit: tuple[str, str]) -> Path:
    shutil.copytree(source, target)
    text = (target / "manifest.toml").read_text(encoding="utf-8")
    assert edit[0] in text
    (target / "manifest.toml").write_text(text.replace(*edit), encoding="utf-8")
    return target


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (('name = "image"', 'name = "pixels"'), r"model inputs are \['image'\]; the"),
        (("[-1, 1, 16, 16]", "[-1, 1, 32, 32]"), r"has shape \[None, 1, 16, 16\], manifest says"),
        (('kind = "dicom-image"', 'kind = "dicom-image"\ndtype = "float64"'),
         r"is tensor\(float\), manifest says float64"),
        (('name = "probabilities"', 'name = "scores"'), r"no output 'scores'; it has \["),
    ],
)  # fmt: skip
def test_onnx_graph_must_match_the_manifest(
    onnx_package: Path, tmp_path: Path, edit: tuple[str, str], message: str
) -> None:
    package = copy_with_manifest(onnx_package, tmp_path / "edited", edit)
    with pytest.raises(AlgorithmError, match=message):
        validate_package(package, limits=FAST, work_root=tmp_path)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (('model = "model.onnx"', 'model = "other.onnx"'), "other.onnx is not a file inside"),
        (('model = "model.onnx"', 'model = "../model.onnx"'), "is not a file inside the package"),
        (('model = "model.onnx"', 'model = "model.pt"'), "kind onnx needs model"),
        (("meaning = ", "meaning = 'logits' #"), "output.meaning: Input should be"),
        (("[-1, 1, 16, 16]", "[4, 1, 16, 16]"), "first axis -1"),
        (("[-1, 1, 16, 16]", "[-1, 2, 16, 16]"), "2 channels"),
        (("classes = 2", "classes = 2\nthreshold = 0.5"), "output.threshold: Extra inputs"),
        (('version = "1.0"', "version = "), "cannot read"),
    ],
)
def test_manifest_errors_name_the_problem(
    onnx_package: Path, tmp_path: Path, edit: tuple[str, str], message: str
) -> None:
    package = copy_with_manifest(onnx_package, tmp_path / "edited", edit)
    with pytest.raises(AlgorithmError, match=message):
        load_package(package)


def test_links_and_missing_code_are_refused(onnx_package: Path, tmp_path: Path) -> None:
    linked = tmp_path / "linked"
    shutil.copytree(onnx_package, linked)
    (linked / "extra").symlink_to("/etc/passwd")
    with pytest.raises(AlgorithmError, match="may not contain links"):
        load_package(linked)
    no_code = python_package(tmp_path / "nocode", "def predict(batch):\n    return batch\n")
    (no_code / "algo.py").unlink()
    with pytest.raises(AlgorithmError, match=r"no algo.py or algo/ for algo:predict"):
        load_package(no_code)
    with pytest.raises(AlgorithmError, match="not an algorithm package"):
        load_package(tmp_path)


def test_package_hash_follows_content(tmp_path: Path) -> None:
    code = "import numpy as np\ndef predict(batch):\n    return np.zeros(len(batch))\n"
    first = package_sha256(python_package(tmp_path / "a", code))
    assert package_sha256(python_package(tmp_path / "b", code)) != first  # name in manifest
    write_manifest(tmp_path / "a", (tmp_path / "a" / "manifest.toml").read_text())
    assert package_sha256(tmp_path / "a") == first
    (tmp_path / "a" / "algo.py").write_text(code + "# changed\n")
    assert package_sha256(tmp_path / "a") != first


def test_python_wheel_entry_point_runs(tmp_path: Path) -> None:
    import zipfile

    root = tmp_path / "wheeled"
    root.mkdir()
    with zipfile.ZipFile(root / "scorer-1.0-py3-none-any.whl", "w") as wheel:
        wheel.writestr(
            "scorer/__init__.py",
            "import numpy as np\ndef predict(batch):\n"
            "    return batch.reshape(len(batch), -1).max(axis=1)\n",
        )
    write_manifest(
        root,
        """\
        [algorithm]
        name = "scorer"
        version = "1.0"
        kind = "python"
        entry_point = "scorer:predict"
        wheel = "scorer-1.0-py3-none-any.whl"

        [input]
        kind = "dicom-image"
        shape = [-1, 1, 16, 16]

        [output]
        meaning = "probability"
        classes = 2
        """,
    )
    report = validate_package(root, limits=FAST, work_root=tmp_path / "work")
    assert report.dry_run_shape == (2,)


def zipped(root: Path, extra: dict[str, bytes] | None = None) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as bundle:
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            bundle.write(path, path.relative_to(root).as_posix())
        for name, data in (extra or {}).items():
            bundle.writestr(name, data)
    return buffer.getvalue()


def test_shipped_packages_unpack_once_and_must_match_their_hash(
    onnx_package: Path, tmp_path: Path
) -> None:
    digest = package_sha256(onnx_package)
    unpacked = unpack_package(zipped(onnx_package), tmp_path / "packages", digest)
    assert (unpacked.sha256, unpacked.root) == (digest, tmp_path / "packages" / digest)
    assert unpack_package(b"ignored: already unpacked", tmp_path / "packages", digest) == unpacked
    with pytest.raises(AlgorithmError, match="is not the expected"):
        unpack_package(zipped(onnx_package, {"extra.txt": b"x"}), tmp_path / "other", digest)
    with pytest.raises(AlgorithmError, match="escapes"):
        unpack_package(zipped(onnx_package, {"../evil.py": b"x"}), tmp_path / "other", "a" * 64)
    with pytest.raises(AlgorithmError, match="not a readable zip"):
        unpack_package(b"not a zip", tmp_path / "other", "a" * 64)
    assert not (tmp_path / "evil.py").exists()
    assert [p.name for p in (tmp_path / "other").iterdir()] == []
