"""Crash-safe writes (rag.fsio) on a real file system."""

from __future__ import annotations

import pytest

from rag.fsio import atomic_copy, atomic_file, atomic_write


def test_atomic_write_replaces_and_leaves_no_temp_file(tmp_path):
    target = tmp_path / "sub" / "faq.json"
    atomic_write(target, "第一版 first")
    atomic_write(target, "第二版 second")
    assert target.read_text(encoding="utf-8") == "第二版 second"
    atomic_write(target, b"\x00\x01")
    assert target.read_bytes() == b"\x00\x01"
    assert [p.name for p in target.parent.iterdir()] == ["faq.json"]


def test_failed_write_keeps_the_old_file(tmp_path):
    target = tmp_path / "model.gguf"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_file(target) as fh:
        fh.write(b"half of the new")
        raise RuntimeError("checksum mismatch")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["model.gguf"]


def test_atomic_copy_and_mode(tmp_path):
    src = tmp_path / "a.pdf"
    src.write_bytes(b"%PDF-1.7 " * 10000)
    dest = tmp_path / "sources" / "a.pdf"
    atomic_copy(src, dest)
    assert dest.read_bytes() == src.read_bytes()
    with pytest.raises(ValueError), atomic_file(dest, "ab"):
        pass


def test_fsync_false_renames_without_fsync(tmp_path, monkeypatch):
    """The index stores document copies this way: never half a file, and no fsync (a full disk reports at save)."""
    import os

    def no_fsync(fd):
        raise OSError(28, "No space left on device")

    src = tmp_path / "a.pdf"
    src.write_bytes(b"%PDF-1.7")
    monkeypatch.setattr(os, "fsync", no_fsync)
    atomic_copy(src, tmp_path / "copy.pdf", fsync=False)
    assert (tmp_path / "copy.pdf").read_bytes() == b"%PDF-1.7"
    with pytest.raises(OSError):
        atomic_copy(src, tmp_path / "durable.pdf")
    assert not (tmp_path / "durable.pdf").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.pdf", "copy.pdf"]
