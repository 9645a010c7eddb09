"""The store engine against a bytearray model, under random guest I/O and copier progress."""

from __future__ import annotations

import os
import random
import tempfile

import hypothesis.strategies as st
from hypothesis import HealthCheck, settings
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from nbdboot.disk.blockmap import ABSENT, GUEST, GUEST_ZERO, BlockMap
from nbdboot.disk.file import FileDevice
from nbdboot.disk.overlay import open_overlay
from nbdboot.disk.copier import attach_copier
from nbdboot.disk.open import open_store

BS = 4096          # small blocks so a few operations cover many cases
NBLOCKS = 24
SIZE = BS * NBLOCKS - 1000   # a short last block


def make_source(path: str, seed: int) -> bytes:
    """A sparse source: data blocks, holes, and data blocks that happen to be all zero."""
    rnd = random.Random(seed)
    with open(path, "wb") as f:
        f.truncate(SIZE)
        for b in range(NBLOCKS):
            kind = rnd.choice(["data", "hole", "hole", "zerodata"])
            if kind == "hole":
                continue
            start = b * BS
            n = min(BS, SIZE - start)
            f.seek(start)
            f.write(bytes(n) if kind == "zerodata" else rnd.randbytes(n))
    with open(path, "rb") as f:
        return f.read()


offsets = st.integers(0, SIZE - 1)


class StoreMachine(RuleBasedStateMachine):
    mode = "deploy"

    @initialize(seed=st.integers(0, 2**16), sync=st.sampled_from(["each", "periodic"]))
    def setup(self, seed, sync):
        self.dir = tempfile.TemporaryDirectory()
        d = self.dir.name
        self.src_path = os.path.join(d, "src.img")
        self.model = bytearray(make_source(self.src_path, seed))
        self.pristine = bytes(self.model)
        self.sync = sync
        self.target = os.path.join(d, "target.img")
        self.overlay = os.path.join(d, "ov.img")
        self.guest_blocks: set[int] = set()
        self.dev = self._open()

    def _open(self):
        source = FileDevice(self.src_path, read_only=True)
        if self.mode == "overlay":
            return open_overlay(source, self.overlay, sync=self.sync, block_size=BS)
        dev = open_store(source, self.target, sync=self.sync, block_size=BS)
        attach_copier(dev, lambda: FileDevice(self.src_path, read_only=True), connections=1,
                      chunk=2 * BS)
        return dev

    def teardown(self):
        if hasattr(self, "dev"):
            self.dev.close()
        self.dir.cleanup()

    @rule(offset=offsets, length=st.integers(1, 3 * BS), data=st.data())
    def write(self, offset, length, data):
        length = min(length, SIZE - offset)
        payload = data.draw(st.binary(min_size=length, max_size=length))
        self.dev.pwrite(payload, offset)
        self.model[offset:offset + length] = payload
        self.guest_blocks.update(range(offset // BS, (offset + length - 1) // BS + 1))

    @rule(offset=offsets, length=st.integers(1, 3 * BS), trim=st.booleans())
    def zero(self, offset, length, trim):
        length = min(length, SIZE - offset)
        (self.dev.trim if trim else self.dev.zero)(offset, length)
        self.model[offset:offset + length] = bytes(length)
        self.guest_blocks.update(range(offset // BS, (offset + length - 1) // BS + 1))

    @rule(offset=offsets, length=st.integers(1, 3 * BS))
    def read(self, offset, length):
        length = min(length, SIZE - offset)
        assert self.dev.pread(length, offset) == bytes(self.model[offset:offset + length])

    @precondition(lambda self: self.mode == "deploy")
    @rule(steps=st.integers(1, 3))
    def copier_steps(self, steps):
        for _ in range(steps):
            self.dev.copier.step()

    # The copier's phases one by one, so guest writes land between its read of
    # the source, its write to the target and its map update.
    @precondition(lambda self: self.mode == "deploy")
    @rule(phase=st.sampled_from(["fetch", "store", "commit"]))
    def copier_phase(self, phase):
        self.dev.copier.step(phase)

    @rule()
    def flush(self):
        self.dev.flush()

    @rule()
    def reopen(self):
        """Close (stopping the copier) and reopen from the files: the map must carry the state."""
        self.dev.close()
        self.dev = self._open()

    @rule()
    def crash_and_reopen(self):
        """Drop everything without closing (as kill -9 would) and reopen: journal replay, resume."""
        dev = self.dev
        dev._closing.set()   # a killed process takes its threads along: no sync timer outlives it
        if dev._sync_thread is not None:
            dev._sync_thread.join()
        if dev.copier is not None:
            dev.copier._close_sources()
        os.close(dev.map.fd)
        dev.target.close()
        dev.source.close()
        self.dev = self._open()

    @invariant()
    def whole_disk_matches(self):
        if hasattr(self, "dev"):
            assert self.dev.pread(SIZE, 0) == bytes(self.model)

    @invariant()
    def guest_blocks_stay_guest(self):
        if hasattr(self, "dev"):
            states = self.dev.map.states
            assert all(states[b] in (GUEST, GUEST_ZERO) for b in self.guest_blocks)

    @invariant()
    def source_untouched(self):
        if hasattr(self, "dev"):
            with open(self.src_path, "rb") as f:
                assert f.read() == self.pristine


class OverlayMachine(StoreMachine):
    mode = "overlay"


_settings = settings(max_examples=60, stateful_step_count=30, deadline=None,
                     suppress_health_check=[HealthCheck.too_slow])
TestDeployModel = StoreMachine.TestCase
TestDeployModel.settings = _settings
TestOverlayModel = OverlayMachine.TestCase
TestOverlayModel.settings = _settings


def test_deploy_finishes_to_source_plus_guest_writes(tmp_path):
    src = tmp_path / "src.img"
    model = bytearray(make_source(str(src), 7))
    target = tmp_path / "t.img"
    dev = open_store(FileDevice(src, read_only=True), str(target), block_size=BS)
    copier = attach_copier(dev, lambda: FileDevice(src, read_only=True), chunk=2 * BS)
    dev.pwrite(b"guest!" * 100, 5000)
    model[5000:5600] = b"guest!" * 100
    copier.start()
    assert copier.wait(30)
    assert copier.error is None and copier.done
    # Served from the target alone, and the target file is the whole disk.
    assert dev.pread(SIZE, 0) == bytes(model)
    assert dev._source_closed
    assert dev.map.states[5000 // BS] == GUEST
    dev.close()
    assert target.read_bytes() == bytes(model)
    # The holes were not copied: bytes copied are at most the source's data blocks.
    assert copier.stats.copied_bytes + copier.stats.zero_bytes + copier.stats.skipped_bytes <= SIZE
    assert copier.stats.zero_bytes > 0


def test_overlay_zero_whole_block_is_guest_zero(tmp_path):
    src = tmp_path / "src.img"
    make_source(str(src), 3)
    dev = open_overlay(FileDevice(src, read_only=True), str(tmp_path / "ov"), block_size=BS)
    dev.zero(BS, 2 * BS)
    dev.pwrite(b"x", 10)
    assert [dev.map.states[i] for i in range(4)] == [GUEST, GUEST_ZERO, GUEST_ZERO, ABSENT]
    dev.close()
    m = BlockMap.open(str(tmp_path / "ov"))
    assert m.states[1] == GUEST_ZERO and m.states[0] == GUEST
    m.close()
