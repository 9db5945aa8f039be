"""Artifact folders: written as a unit, never overwritten, and refused when altered."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spywatch.artifact import (
    FORMAT_VERSION,
    MANIFEST_NAME,
    ArtifactError,
    read_manifest,
    sweep_partial,
    verify_artifact,
    write_artifact,
)

FILES = {
    "config.json": b'{"d_model": 16}\n',
    "weights.pt": bytes(range(256)) * 8,
    "scaler.json": b'{"mean": [0.0]}\n',
    "metrics.json": b'{"auc": {"h1": 0.55}}\n',
}


def _write(tmp_path: Path, name: str = "model") -> Path:
    return write_artifact(tmp_path / name, FILES, {"trainer": "test", "seed": 7})


def _hidden(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name.startswith("."))


# --------------------------------------------------------------------------- round trip

def test_round_trip_records_checksums_sizes_and_meta(tmp_path):
    dest = _write(tmp_path)
    manifest = verify_artifact(dest)
    assert sorted(p.name for p in dest.iterdir()) == sorted([*FILES, MANIFEST_NAME])
    assert manifest.format_version == FORMAT_VERSION
    assert manifest.created_at.endswith("Z")
    assert manifest.meta == {"trainer": "test", "seed": 7}
    for entry in manifest.files:
        assert entry.sha256 == hashlib.sha256(FILES[entry.name]).hexdigest()
        assert entry.size == len(FILES[entry.name])
        assert (dest / entry.name).read_bytes() == FILES[entry.name]
    assert read_manifest(dest) == manifest
    on_disk = json.loads((dest / MANIFEST_NAME).read_text())
    assert set(on_disk) == {"format_version", "created_at", "files", "meta"}
    assert _hidden(tmp_path) == []


def test_callable_writers_and_torch_state_dict_round_trip(tmp_path):
    torch = pytest.importorskip("torch")
    state = {"w": torch.arange(6, dtype=torch.float32).reshape(2, 3)}
    dest = write_artifact(tmp_path / "m", {"weights.pt": lambda p: torch.save(state, p),
                                           "config.json": b"{}"}, {})
    verify_artifact(dest, required=("weights.pt", "config.json"))
    loaded = torch.load(dest / "weights.pt", weights_only=True)
    assert torch.equal(loaded["w"], state["w"])


def test_content_digest_ignores_write_time(tmp_path):
    a = verify_artifact(_write(tmp_path, "a"))
    b = verify_artifact(_write(tmp_path, "b"))
    assert a.digest == b.digest
    c = verify_artifact(write_artifact(tmp_path / "c", {**FILES, "weights.pt": b"other"}, {}))
    assert c.digest != a.digest


# --------------------------------------------------------------------------- never overwrite, never half-written

def test_existing_destination_is_never_overwritten(tmp_path):
    dest = _write(tmp_path)
    before = {p.name: p.read_bytes() for p in dest.iterdir()}
    with pytest.raises(ArtifactError, match="already exists"):
        write_artifact(dest, {"weights.pt": b"new"}, {})
    assert {p.name: p.read_bytes() for p in dest.iterdir()} == before
    assert _hidden(tmp_path) == []


def test_existing_empty_folder_is_not_replaced(tmp_path):
    # POSIX rename() would silently replace an empty folder; the writer must refuse instead
    (tmp_path / "m").mkdir()
    with pytest.raises(ArtifactError, match="already exists"):
        write_artifact(tmp_path / "m", FILES, {})
    assert list((tmp_path / "m").iterdir()) == []


def test_failing_writer_leaves_nothing(tmp_path):
    def boom(path: Path) -> None:
        path.write_bytes(b"partial")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        write_artifact(tmp_path / "m", {"config.json": b"{}", "weights.pt": boom}, {})
    assert list(tmp_path.iterdir()) == []


def test_writer_that_creates_nothing_is_an_error(tmp_path):
    with pytest.raises(ArtifactError, match="weights.pt"):
        write_artifact(tmp_path / "m", {"weights.pt": lambda p: None}, {})
    assert list(tmp_path.iterdir()) == []


def test_writer_leaving_a_stray_file_is_an_error(tmp_path):
    def sloppy(path: Path) -> None:
        path.write_bytes(b"w")
        (path.parent / "weights.pt.bak").write_bytes(b"w")

    with pytest.raises(ArtifactError, match="differ from the expected"):
        write_artifact(tmp_path / "m", {"weights.pt": sloppy}, {})
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", ["../evil", "a/b", ".hidden", MANIFEST_NAME, "", "sp ace"])
def test_bad_file_names_are_refused(tmp_path, name):
    with pytest.raises(ArtifactError, match="invalid artifact file name"):
        write_artifact(tmp_path / "m", {name: b"x"}, {})
    assert list(tmp_path.iterdir()) == []


def test_meta_that_is_not_json_fails_before_writing(tmp_path):
    with pytest.raises(ArtifactError, match="not JSON serialisable"):
        write_artifact(tmp_path / "m", FILES, {"when": object()})
    assert list(tmp_path.iterdir()) == []


def test_sweep_partial_removes_only_temp_folders(tmp_path):
    dest = _write(tmp_path)
    (tmp_path / ".artifact.abc.tmp").mkdir()
    (tmp_path / ".artifact.abc.tmp" / "weights.pt").write_bytes(b"half")
    removed = sweep_partial(tmp_path)
    assert [p.name for p in removed] == [".artifact.abc.tmp"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]
    verify_artifact(dest)


# --------------------------------------------------------------------------- verification refuses damage

def test_tampered_byte_is_refused_naming_the_file(tmp_path):
    dest = _write(tmp_path)
    data = bytearray((dest / "weights.pt").read_bytes())
    data[100] ^= 0x01
    (dest / "weights.pt").write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match=r"weights\.pt fails its checksum"):
        verify_artifact(dest)


def test_truncated_file_is_refused_naming_the_file(tmp_path):
    dest = _write(tmp_path)
    with open(dest / "weights.pt", "r+b") as fh:
        fh.truncate(10)
    with pytest.raises(ArtifactError, match=r"weights\.pt is truncated: 10 bytes, manifest says 2048"):
        verify_artifact(dest)


def test_grown_file_is_refused(tmp_path):
    dest = _write(tmp_path)
    with open(dest / "scaler.json", "ab") as fh:
        fh.write(b" ")
    with pytest.raises(ArtifactError, match=r"scaler\.json is grown"):
        verify_artifact(dest)


def test_missing_file_is_refused_naming_the_file(tmp_path):
    dest = _write(tmp_path)
    (dest / "scaler.json").unlink()
    with pytest.raises(ArtifactError, match=r"missing file scaler\.json"):
        verify_artifact(dest)


@pytest.mark.parametrize("extra", ["weights2.pt", ".weights.pt"])
def test_unlisted_file_is_refused(tmp_path, extra):
    dest = _write(tmp_path)
    (dest / extra).write_bytes(b"smuggled")
    with pytest.raises(ArtifactError, match=f"unlisted file.*{extra}"):
        verify_artifact(dest)


def test_sub_folder_is_refused(tmp_path):
    dest = _write(tmp_path)
    (dest / "extra").mkdir()
    with pytest.raises(ArtifactError, match="extra is not a plain file"):
        verify_artifact(dest)


def test_required_file_missing_from_manifest_is_refused(tmp_path):
    dest = write_artifact(tmp_path / "m", {"config.json": b"{}"}, {})
    with pytest.raises(ArtifactError, match=r"required file weights\.pt is not listed"):
        verify_artifact(dest, required=("config.json", "weights.pt"))


def test_missing_or_corrupt_manifest_is_refused(tmp_path):
    dest = _write(tmp_path)
    (dest / MANIFEST_NAME).write_text('{"format_version": 1, "files"')
    with pytest.raises(ArtifactError, match="unreadable manifest"):
        verify_artifact(dest)
    (dest / MANIFEST_NAME).write_text('{"format_version": 1}')
    with pytest.raises(ArtifactError, match="malformed manifest"):
        verify_artifact(dest)
    (dest / MANIFEST_NAME).unlink()
    with pytest.raises(ArtifactError, match=f"missing {MANIFEST_NAME}"):
        verify_artifact(dest)
    with pytest.raises(ArtifactError, match="does not exist"):
        verify_artifact(tmp_path / "nope")


def test_manifest_edited_to_a_future_format_is_refused(tmp_path):
    dest = _write(tmp_path)
    data = json.loads((dest / MANIFEST_NAME).read_text())
    data["format_version"] = FORMAT_VERSION + 1
    (dest / MANIFEST_NAME).write_text(json.dumps(data))
    with pytest.raises(ArtifactError, match="unsupported artifact format_version"):
        verify_artifact(dest)


@settings(max_examples=40, deadline=None)
@given(name=st.sampled_from(sorted(FILES)), position=st.floats(0, 1, exclude_max=True),
       flip=st.integers(1, 255))
def test_any_single_byte_change_is_caught_and_named(tmp_path_factory, name, position, flip):
    dest = _write(tmp_path_factory.mktemp("a"))
    data = bytearray((dest / name).read_bytes())
    data[int(position * len(data))] ^= flip
    (dest / name).write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match=name.replace(".", r"\.")):
        verify_artifact(dest)
