"""FileDevice: the local backend every other device is measured against."""

from hypothesis import given, settings, strategies as st

from nbdboot.disk import EXTENT_HOLE, EXTENT_ZERO, FileDevice, DiskRangeError, DiskReadOnlyError
import pytest

SIZE = 1 << 20


def test_read_write_roundtrip(tmp_path):
    dev = FileDevice(tmp_path / "d.img", create_size=SIZE)
    dev.pwrite(b"hello", 1000)
    assert dev.pread(5, 1000) == b"hello"
    assert dev.pread(4, 996) == b"\0" * 4
    with pytest.raises(DiskRangeError):
        dev.pread(2, SIZE - 1)
    dev.close()


def test_read_only_refuses_writes(tmp_path):
    (tmp_path / "r.img").write_bytes(b"\1" * 4096)
    dev = FileDevice(tmp_path / "r.img", read_only=True)
    with pytest.raises(DiskReadOnlyError):
        dev.pwrite(b"x", 0)
    assert dev.pread(2, 0) == b"\1\1"


def test_extents_follow_holes_and_zero_punches_them(tmp_path):
    dev = FileDevice(tmp_path / "s.img", create_size=SIZE)
    dev.pwrite(b"x" * 65536, 256 * 1024)
    ext = dev.extents(0, SIZE)
    assert ext[0].offset == 0 and sum(e.length for e in ext) == SIZE
    data = [e for e in ext if not e.flags]
    assert data and all(e.offset <= 256 * 1024 < e.end or e.offset >= 256 * 1024 for e in data)
    assert any(e.flags == EXTENT_HOLE | EXTENT_ZERO for e in ext)
    dev.zero(256 * 1024, 65536)
    assert dev.pread(65536, 256 * 1024) == bytes(65536)
    assert all(e.flags & EXTENT_ZERO for e in dev.extents(0, SIZE))


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, SIZE - 1), st.binary(min_size=1, max_size=5000)), max_size=12))
def test_file_matches_a_bytearray_model(tmp_path_factory, writes):
    path = tmp_path_factory.mktemp("m") / "m.img"
    dev = FileDevice(path, create_size=SIZE)
    model = bytearray(SIZE)
    for off, data in writes:
        data = data[: SIZE - off]
        dev.pwrite(data, off)
        model[off:off + len(data)] = data
    assert dev.pread(SIZE, 0) == bytes(model)
    covered = sum(e.length for e in dev.extents(0, SIZE))
    assert covered == SIZE
    dev.close()
