"""The sans-IO codec: round trips, reply assembly, and malformed server streams."""

from __future__ import annotations

import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nbdboot.nbd import protocol as P
from nbdboot.nbd.errors import NbdProtocolError

u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)
u64 = st.integers(0, 0xFFFFFFFFFFFFFFFF)
names = st.text(max_size=64)


@given(u16, u16, u64, u64, u32)
def test_request_round_trip(flags, cmd, cookie, offset, length):
    wire = P.encode_request(cmd, cookie, offset, length, flags)
    assert len(wire) == P.REQUEST_SIZE
    assert P.decode_request(wire) == (flags, cmd, cookie, offset, length)


@given(u32, st.binary(max_size=300))
def test_option_round_trip(opt, data):
    wire = P.encode_option(opt, data)
    assert P.decode_option_header(wire[:16]) == (opt, len(data))
    assert wire[16:] == data


@given(u32, st.sampled_from([P.REP_ACK, P.REP_SERVER, P.REP_INFO, P.REP_ERR_UNSUP]), st.binary(max_size=64))
def test_option_reply_round_trip(opt, kind, data):
    if kind == P.REP_ACK:
        data = b""
    wire = P.encode_option_reply(opt, kind, data)
    r = P.decode_option_reply_header(wire[:20], opt)
    assert (r.option, r.type, r.length) == (opt, kind, len(data))
    assert r.is_error == (kind == P.REP_ERR_UNSUP)


@given(names, st.lists(u16, max_size=8))
def test_info_request_round_trip(name, infos):
    assert P.decode_info_request(P.encode_info_request(name, infos)) == (name, infos)


@given(names, st.lists(names, max_size=5))
def test_meta_query_round_trip(export, queries):
    assert P.decode_meta_query(P.encode_meta_query(export, queries)) == (export, queries)


@given(names, names)
def test_rep_server_round_trip(name, desc):
    assert P.decode_rep_server(P.encode_rep_server(name, desc)) == (name, desc)


@given(u32, names.filter(bool))
def test_rep_meta_context_round_trip(cid, name):
    assert P.decode_rep_meta_context(P.encode_rep_meta_context(cid, name)) == (cid, name)


@given(st.integers(0, P.MAX_EXPORT_SIZE), u16)
def test_info_export_round_trip(size, flags):
    flags |= P.TFLAG_HAS_FLAGS
    kind, (s, f) = P.decode_info(P.encode_info_export(size, flags))
    assert kind == P.INFO_EXPORT and s == size
    assert f == (flags if flags & P.TFLAG_SEND_WRITE_ZEROES else flags & ~P.TFLAG_SEND_FAST_ZERO)


def test_info_rejects_huge_size_missing_has_flags_and_bad_lengths():
    with pytest.raises(NbdProtocolError, match="2\\^63"):
        P.decode_info(P.encode_info_export(1 << 63, 1))
    with pytest.raises(NbdProtocolError, match="HAS_FLAGS"):
        P.decode_info(P.encode_info_export(4096, 0))
    with pytest.raises(NbdProtocolError):
        P.decode_info(P.encode_info_export(4096, 1) + b"x")
    with pytest.raises(NbdProtocolError):
        P.decode_info(P.encode_info_block_size(512, 4096, 1 << 20)[:-1])
    with pytest.raises(NbdProtocolError):
        P.decode_oldstyle_rest(struct.pack(">QI", 1 << 63, 1) + bytes(124))


def test_option_reply_checks_magic_echo_ack_and_length():
    good = P.encode_option_reply(7, P.REP_ACK)
    with pytest.raises(NbdProtocolError, match="magic"):
        P.decode_option_reply_header(b"\xff" + good[1:20], 7)
    with pytest.raises(NbdProtocolError, match="expected 8"):
        P.decode_option_reply_header(good[:20], 8)
    with pytest.raises(NbdProtocolError, match="ACK"):
        P.decode_option_reply_header(struct.pack(">QIII", P.REP_MAGIC, 7, P.REP_ACK, 4), 7)
    with pytest.raises(NbdProtocolError, match="too long"):
        P.decode_option_reply_header(struct.pack(">QIII", P.REP_MAGIC, 7, P.REP_INFO, 1 << 30), 7)


def test_block_size_sanity_follows_libnbd():
    assert P.sane_block_sizes(512, 4096, 32 << 20)
    assert P.sane_block_sizes(1, 4096, 0xFFFFFFFF)
    assert not P.sane_block_sizes(3, 4096, 1 << 20)
    assert not P.sane_block_sizes(512, 256, 1 << 20)
    assert not P.sane_block_sizes(1 << 17, 1 << 17, 1 << 20)
    assert not P.sane_block_sizes(512, 4096, 2048)


# -- reply assembly ------------------------------------------------------------------------

def _parser(structured=True, contexts=None):
    return P.ReplyParser(P.ReplyTracker(structured, contexts or {}))


def _feed_in_pieces(parser, wire, cuts):
    events = []
    pos = 0
    for cut in sorted(set(c % (len(wire) + 1) for c in cuts)) + [len(wire)]:
        events += parser.feed(wire[pos:cut])
        pos = cut
    return events


@st.composite
def read_replies(draw):
    length = draw(st.integers(1, 2048))
    offset = draw(st.integers(0, 1 << 40))
    data = draw(st.binary(min_size=length, max_size=length))
    # split the request into pieces; each is data or (if all zero) may be a hole
    cuts = sorted(draw(st.sets(st.integers(1, length - 1), max_size=6))) if length > 1 else []
    bounds = [0] + cuts + [length]
    pieces = []
    for a, b in zip(bounds, bounds[1:]):
        hole = draw(st.booleans())
        pieces.append((a, b, hole))
    order = draw(st.permutations(pieces))
    return offset, length, data, order, draw(st.lists(st.integers(0, 100000), max_size=8))


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(read_replies())
def test_structured_read_assembles_any_chunk_order_and_fragmentation(case):
    offset, length, data, pieces, cuts = case
    expect = bytearray(data)
    parser = _parser()
    parser.send(P.Request(P.CMD_READ, offset, length, cookie=9))
    wire = b""
    for i, (a, b, hole) in enumerate(pieces):
        last = i == len(pieces) - 1
        if hole:
            expect[a:b] = bytes(b - a)
            wire += P.encode_offset_hole(9, offset + a, b - a, last)
        else:
            wire += P.encode_offset_data(9, offset + a, b - a, last) + data[a:b]
    events = _feed_in_pieces(parser, wire, cuts)
    got = bytearray(length)
    for ev in events:
        if isinstance(ev, P.ReadData):
            got[ev.offset - offset:ev.offset - offset + len(ev.data)] = ev.data
    assert got == expect
    assert events[-1] == P.Done(9, 0)
    assert not parser.tracker.pending


@given(st.binary(min_size=1, max_size=512), st.lists(st.integers(0, 600), max_size=5))
def test_simple_read_reply(data, cuts):
    parser = _parser(structured=False)
    parser.send(P.Request(P.CMD_READ, 4096, len(data), cookie=1))
    events = _feed_in_pieces(parser, P.encode_simple_reply(1) + data, cuts)
    assert events == [P.ReadData(1, 4096, data), P.Done(1, 0)]


@given(st.binary(max_size=200), st.booleans())
def test_garbage_never_escapes_as_anything_but_protocol_error(junk, structured):
    parser = _parser(structured=structured, contexts={1: P.CONTEXT_BASE_ALLOCATION})
    parser.send(P.Request(P.CMD_READ, 0, 64, cookie=1))
    parser.send(P.Request(P.CMD_BLOCK_STATUS, 0, 64, cookie=2))
    parser.send(P.Request(P.CMD_WRITE, 0, 64, cookie=3))
    try:
        for ev in parser.feed(junk):
            if isinstance(ev, P.ReadData):
                assert 0 <= ev.offset and ev.offset + len(ev.data) <= 64
    except NbdProtocolError:
        assert parser.dead


@given(st.binary(min_size=20, max_size=120), st.integers(0, 19), st.integers(0, 255))
def test_mutated_valid_stream_fails_cleanly(tail, where, value):
    """Flip one header byte of a valid reply: a typed error or a consistent result, nothing else."""
    parser = _parser()
    parser.send(P.Request(P.CMD_READ, 1000, len(tail), cookie=5))
    wire = bytearray(P.encode_offset_data(5, 1000, len(tail), True) + tail)
    wire[where] = value
    try:
        events = parser.feed(bytes(wire))
    except NbdProtocolError:
        return
    for ev in events:
        if isinstance(ev, P.ReadData):
            assert 1000 <= ev.offset and ev.offset + len(ev.data) <= 1000 + len(tail)


# requests as Request() arguments: a Request records the reply progress, so each case gets a fresh one
READ = dict(cmd=P.CMD_READ, offset=4096, length=512, cookie=1)
BLOCK_STATUS = dict(cmd=P.CMD_BLOCK_STATUS, offset=0, length=4096, cookie=2)
ALLOCATION = {1: "base:allocation"}

# id: (wire, request, structured replies negotiated, meta contexts negotiated, what the error must say)
MALFORMED = {
    "bad-magic": (b"\x12\x34\x56\x78" + bytes(16), READ, True, None, "magic"),
    "unknown-cookie": (P.encode_simple_reply(99), READ, False, None, "unknown cookie"),
    "data-before-request": (P.encode_offset_data(1, 4096 - 1, 1, True) + b"x", READ, True, None, "outside"),
    "data-after-request": (P.encode_offset_data(1, 4096 + 512, 1, True) + b"x", READ, True, None, "OFFSET_DATA"),
    # 2^64-1 wrap: must not become a negative index
    "offset-wraps": (P.encode_offset_data(1, (1 << 64) - 1, 8, True) + bytes(8), READ, True, None, "outside"),
    "chunks-overlap": (P.encode_offset_data(1, 4096, 256, False) + bytes(256)
                       + P.encode_offset_data(1, 4096 + 128, 256, True) + bytes(256), READ, True, None, "overlap"),
    "short-read": (P.encode_offset_data(1, 4096, 256, True) + bytes(256), READ, True, None, "256 bytes"),
    "empty-hole": (P.encode_offset_hole(1, 4096, 0, True), READ, True, None, "size 0"),
    "huge-data-chunk": (P.encode_chunk_header(1, P.REPLY_TYPE_OFFSET_DATA, 1 << 30, True), READ, True, None,
                        "OFFSET_DATA"),
    "chunk-not-negotiated": (P.encode_offset_data(1, 4096, 512, True), READ, False, None, "structured"),
    "simple-reply-to-structured-read": (P.encode_simple_reply(1), READ, True, None, "simple reply to READ"),
    "error-value-zero": (P.encode_error_chunk(1, 0, "x"), READ, True, None, "error value 0"),
    "unknown-chunk-type": (P.encode_chunk_header(1, 77, 0, True), READ, True, None, "unknown chunk type"),
    "none-with-payload": (P.encode_chunk_header(1, P.REPLY_TYPE_NONE, 4, True) + bytes(4), READ, True, None, "NONE"),
    "context-not-negotiated": (P.encode_block_status(2, 7, [(4096, 0)]), BLOCK_STATUS, True, ALLOCATION,
                               "not negotiated"),
    "zero-length-extent": (P.encode_block_status(2, 1, [(0, 0)]), BLOCK_STATUS, True, ALLOCATION, "zero-length"),
    "req-one-answered-with-two": (P.encode_block_status(2, 1, [(512, 0), (512, 3)]),
                                  dict(BLOCK_STATUS, flags=P.CMD_FLAG_REQ_ONE), True,
                                  ALLOCATION, "REQ_ONE"),
    "data-for-write": (P.encode_offset_data(1, 4096, 512, True) + bytes(512), dict(READ, cmd=P.CMD_WRITE), True, None,
                       "OFFSET_DATA chunk for WRITE"),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_reply_is_a_protocol_error(case):
    wire, request, structured, contexts, match = MALFORMED[case]
    parser = _parser(structured, contexts)
    parser.send(P.Request(**request))
    with pytest.raises(NbdProtocolError, match=match):
        parser.feed(wire)


def test_errors_are_per_request_and_connection_survives():
    parser = _parser(contexts={1: P.CONTEXT_BASE_ALLOCATION})
    parser.send(P.Request(P.CMD_READ, 0, 512, cookie=1))
    parser.send(P.Request(P.CMD_WRITE, 0, 512, cookie=2))
    parser.send(P.Request(P.CMD_READ, 512, 512, cookie=3))
    events = parser.feed(P.encode_error_chunk(1, 5, "disk on fire", offset=100) + P.encode_simple_reply(2, 28)
                         + P.encode_error_chunk(3, 12345, "odd", done=False) + P.encode_none_chunk(3))
    assert P.CommandFailed(1, 5, "disk on fire", 100) in events
    assert P.Done(1, 5) in events
    assert P.Done(2, 28) in events
    assert P.Done(3, 22) in events  # unknown errno -> EINVAL
    assert not parser.tracker.pending


def test_block_status_and_write_replies():
    parser = _parser(contexts={4: P.CONTEXT_BASE_ALLOCATION})
    parser.send(P.Request(P.CMD_BLOCK_STATUS, 0, 8192, cookie=1))
    parser.send(P.Request(P.CMD_WRITE, 0, 512, cookie=2))
    events = parser.feed(P.encode_block_status(1, 4, [(4096, 0), (8192, 3)]) + P.encode_simple_reply(2))
    assert events == [P.BlockStatusEvent(1, 4, [(4096, 0), (8192, 3)]), P.Done(1, 0), P.Done(2, 0)]


@given(pieces=st.lists(st.binary(max_size=40), max_size=6), sends=st.lists(st.integers(0, 60), max_size=8))
def test_drop_sent_leaves_what_a_partial_send_did_not_take(pieces, sends):
    views = [memoryview(p) for p in pieces if p]
    left = b"".join(pieces)
    for n in sends:
        n = min(n, len(left))
        P.drop_sent(views, n)
        left = left[n:]
        assert b"".join(bytes(v) for v in views) == left and all(len(v) for v in views)
