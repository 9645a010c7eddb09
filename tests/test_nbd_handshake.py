"""The client handshake machine: its transition table, every path fed bytes in any split, and the sans-IO rule."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nbdboot.nbd import handshake as H
from nbdboot.nbd import protocol as P
from nbdboot.nbd.client import NbdClient
from nbdboot.nbd.errors import NbdNegotiationError, NbdProtocolError, NbdTLSError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MiB = 1 << 20
RW = P.TFLAG_HAS_FLAGS | P.TFLAG_SEND_FLUSH | P.TFLAG_SEND_DF
TERMINAL = {H.TRANSMISSION, H.CLOSED, H.FAILED}


# -- server byte streams, built with the codec's server-side encoders -------------------------------------

def _rep(opt, kind, data=b""):
    return P.encode_option_reply(opt, kind, data)


def _go_ok(size=MiB, flags=RW, block=(512, 4096, 32 * MiB)):
    return (_rep(P.OPT_GO, P.REP_INFO, P.encode_info_export(size, flags))
            + _rep(P.OPT_GO, P.REP_INFO, P.encode_info_block_size(*block))
            + _rep(P.OPT_GO, P.REP_INFO, P.encode_info_string(P.INFO_DESCRIPTION, "disk"))
            + _rep(P.OPT_GO, P.REP_ACK))


def _structured_and_meta():
    return (_rep(P.OPT_STRUCTURED_REPLY, P.REP_ACK)
            + _rep(P.OPT_SET_META_CONTEXT, P.REP_META_CONTEXT, P.encode_rep_meta_context(7, "base:allocation"))
            + _rep(P.OPT_SET_META_CONTEXT, P.REP_ACK))


NEWSTYLE = P.encode_newstyle_greeting()
PLAIN_NEWSTYLE = P.encode_newstyle_greeting(0)

# name -> (machine arguments, server bytes before TLS, server bytes after TLS or None)
PATHS = {
    "oldstyle": (dict(), P.encode_oldstyle_greeting(3 * MiB, RW), None),
    "go": (dict(meta_contexts=["base:allocation"]), NEWSTYLE + _structured_and_meta() + _go_ok(), None),
    "go-unsupported-export-name": (
        dict(meta_contexts=["base:allocation"]),
        P.encode_newstyle_greeting(P.FLAG_FIXED_NEWSTYLE) + _rep(P.OPT_STRUCTURED_REPLY, P.REP_ERR_UNSUP)
        + _rep(P.OPT_GO, P.REP_ERR_UNSUP, b"no GO here") + P.encode_export_name_reply(2 * MiB, RW, False), None),
    "go-unsupported-no-zeroes": (
        dict(structured=False), NEWSTYLE + _rep(P.OPT_GO, P.REP_ERR_UNSUP)
        + P.encode_export_name_reply(2 * MiB, RW, True), None),
    "plain-newstyle": (dict(), PLAIN_NEWSTYLE + P.encode_export_name_reply(MiB, RW, False), None),
    "tls-go": (dict(tls=True, meta_contexts=["base:allocation"]),
               NEWSTYLE + _rep(P.OPT_STARTTLS, P.REP_ACK), _structured_and_meta() + _go_ok()),
    "list": (dict(goal=H.GOAL_LIST),
             NEWSTYLE + _rep(P.OPT_LIST, P.REP_SERVER, P.encode_rep_server("a", "first"))
             + _rep(P.OPT_LIST, P.REP_SERVER, P.encode_rep_server("b")) + _rep(P.OPT_LIST, P.REP_ACK)
             + _rep(P.OPT_ABORT, P.REP_ACK), None),
    "tls-list-meta": (dict(goal=H.GOAL_LIST_META, tls=True), NEWSTYLE + _rep(P.OPT_STARTTLS, P.REP_ACK),
                      _rep(P.OPT_STRUCTURED_REPLY, P.REP_ACK)
                      + _rep(P.OPT_LIST_META_CONTEXT, P.REP_META_CONTEXT, P.encode_rep_meta_context(0, "base:allocation"))
                      + _rep(P.OPT_LIST_META_CONTEXT, P.REP_META_CONTEXT, P.encode_rep_meta_context(0, "qemu:"))
                      + _rep(P.OPT_LIST_META_CONTEXT, P.REP_ACK) + _rep(P.OPT_ABORT, P.REP_ACK)),
    "list-meta-oldstyle": (dict(goal=H.GOAL_LIST_META), P.encode_oldstyle_greeting(MiB, RW), None),
    "list-meta-plain-newstyle": (dict(goal=H.GOAL_LIST_META), PLAIN_NEWSTYLE, None),
    "list-meta-no-structured": (dict(goal=H.GOAL_LIST_META), NEWSTYLE + _rep(P.OPT_STRUCTURED_REPLY, P.REP_ERR_UNSUP),
                                None),
}


def _machine(args):
    args = dict(args)
    goal = args.pop("goal", H.GOAL_EXPORT)
    return H.ClientHandshake(goal, "disk", **args)


def _describe(action):
    """An action as comparable data: options by number, other sends raw."""
    if action is H.UPGRADE_TLS:
        return "UPGRADE_TLS"
    data = action.data
    if len(data) >= P.OPTION_HEADER_SIZE and data[:8] == P.IHAVEOPT.to_bytes(8, "big"):
        return ("option", P.decode_option_header(data[:16])[0], data[16:])
    return ("send", data)


def _result(hs):
    r = hs.result
    if isinstance(r, H.Export):
        return ("export", r.size, r.flags, tuple(r.block_sizes), r.structured, dict(r.contexts), r.name,
                r.description, r.protocol, r.tls)
    return r


def _run(args, before, after, cuts=()):
    """Feed the server's bytes cut at `cuts` (positions in before + after); (actions, transitions, result)."""
    hs = _machine(args)
    actions = []
    wire = before + (after or b"")
    points = sorted({c % (len(wire) + 1) for c in cuts} | {len(before), len(wire)})
    pos = 0
    for cut in points:
        for out in [hs.receive(wire[pos:cut])]:
            actions += [_describe(a) for a in out]
            if H.UPGRADE_TLS in out:
                assert cut == len(before) and hs.needed == 0
                actions += [_describe(a) for a in hs.tls_established()]
        pos = cut
    return actions, hs.history, _result(hs), hs.state


# -- the table ---------------------------------------------------------------------------------------------

def test_transition_table_is_closed_and_every_state_leads_somewhere():
    states = set(H.TRANSITIONS)
    for src, edges in H.TRANSITIONS.items():
        assert set(edges.values()) <= states, src
        if src in TERMINAL:
            assert not edges, f"{src} is terminal but has exits"
        else:
            assert edges, f"{src} has no way out"
    reach, todo = set(), [H.AWAIT_GREETING]
    while todo:
        s = todo.pop()
        if s not in reach:
            reach.add(s)
            todo += H.TRANSITIONS[s].values()
    assert reach == states - {H.FAILED}   # FAILED is entered by an error, not by an event


def test_the_paths_take_every_edge_of_the_table_and_end_in_a_final_state():
    taken = set()
    for name, (args, before, after) in PATHS.items():
        # one byte at a time, as a transport reading 1-byte segments would
        _, history, result, final = _run(args, before, after, range(len(before) + len(after or b"") + 1))
        assert final in (H.TRANSMISSION, H.CLOSED) and result is not None, name
        assert history[0][0] == H.AWAIT_GREETING and history[-1][2] == final, name
        assert all(a[2] == b[0] for a, b in zip(history, history[1:])), name
        taken |= set(history)
    table = {(src, ev, dst) for src, edges in H.TRANSITIONS.items() for ev, dst in edges.items()}
    assert taken == table


def test_a_step_off_the_table_is_refused():
    hs = _machine({})
    with pytest.raises(RuntimeError, match="no transition from AWAIT_GREETING"):
        hs.tls_established()


# -- each path's outcome --------------------------------------------------------------------------------------

def test_oldstyle_greeting_opens_the_export_with_no_client_bytes():
    actions, _, result, state = _run(*PATHS["oldstyle"])
    assert actions == [] and state == H.TRANSMISSION
    assert result[:3] == ("export", 3 * MiB, RW) and result[8] == "oldstyle"


def test_oldstyle_refuses_tls_and_listing():
    hs = _machine(dict(tls=True))
    with pytest.raises(NbdTLSError, match="oldstyle"):
        hs.receive(P.encode_oldstyle_greeting(MiB, RW))
    assert hs.state == H.FAILED
    with pytest.raises(NbdNegotiationError, match="cannot list"):
        _machine(dict(goal=H.GOAL_LIST)).receive(P.encode_oldstyle_greeting(MiB, RW))
    assert _run(*PATHS["list-meta-oldstyle"])[2] == []


def test_go_path_sends_flags_structured_meta_then_go():
    actions, _, result, _ = _run(*PATHS["go"])
    assert actions[0] == ("send", (P.FLAG_C_FIXED_NEWSTYLE | P.FLAG_C_NO_ZEROES).to_bytes(4, "big"))
    assert [a[1] for a in actions[1:]] == [P.OPT_STRUCTURED_REPLY, P.OPT_SET_META_CONTEXT, P.OPT_GO]
    assert result == ("export", MiB, RW, (512, 4096, 32 * MiB), True, {7: "base:allocation"}, "disk", "disk",
                      "newstyle-fixed", False)


def test_go_unsupported_falls_back_to_export_name_with_and_without_zeroes():
    actions, _, result, _ = _run(*PATHS["go-unsupported-export-name"])
    assert [a[1] for a in actions[1:]] == [P.OPT_STRUCTURED_REPLY, P.OPT_GO, P.OPT_EXPORT_NAME]
    assert actions[-1][2] == b"disk"
    # no structured replies: no meta contexts, and DF means nothing
    assert result == ("export", 2 * MiB, RW & ~P.TFLAG_SEND_DF, (1, 4096, P.DEFAULT_MAX_BLOCK), False, {},
                      "disk", "", "newstyle-fixed", False)
    assert _run(*PATHS["go-unsupported-no-zeroes"])[2][1] == 2 * MiB


def test_plain_newstyle_goes_straight_to_export_name():
    actions, _, result, _ = _run(*PATHS["plain-newstyle"])
    assert actions == [("send", bytes(4)), ("option", P.OPT_EXPORT_NAME, b"disk")]
    assert result[8] == "newstyle"


def test_starttls_comes_first_and_the_transport_upgrades_before_anything_else():
    actions, _, result, _ = _run(*PATHS["tls-go"])
    assert actions[1] == ("option", P.OPT_STARTTLS, b"") and actions[2] == "UPGRADE_TLS"
    assert [a[1] for a in actions[3:]] == [P.OPT_STRUCTURED_REPLY, P.OPT_SET_META_CONTEXT, P.OPT_GO]
    assert result[-1] is True and result[5] == {7: "base:allocation"}


def test_plaintext_after_the_starttls_ack_is_an_injection():
    hs = _machine(dict(tls=True))
    with pytest.raises(NbdProtocolError, match="STARTTLS"):
        hs.receive(NEWSTYLE + _rep(P.OPT_STARTTLS, P.REP_ACK) + _rep(P.OPT_STRUCTURED_REPLY, P.REP_ACK))


def test_tls_refused_or_impossible():
    with pytest.raises(NbdTLSError, match="refused"):
        _machine(dict(tls=True)).receive(NEWSTYLE + _rep(P.OPT_STARTTLS, P.REP_ERR_POLICY))
    with pytest.raises(NbdTLSError, match="fixed newstyle"):
        _machine(dict(tls=True)).receive(PLAIN_NEWSTYLE)


def test_listing_ends_with_abort():
    actions, _, result, state = _run(*PATHS["list"])
    assert result == [("a", "first"), ("b", "")] and state == H.CLOSED
    assert [a[1] for a in actions[1:]] == [P.OPT_LIST, P.OPT_ABORT]
    actions, _, result, _ = _run(*PATHS["tls-list-meta"])
    assert result == ["base:allocation", "qemu:"]
    assert [a if a == "UPGRADE_TLS" else a[1] for a in actions[1:]] == [
        P.OPT_STARTTLS, "UPGRADE_TLS", P.OPT_STRUCTURED_REPLY, P.OPT_LIST_META_CONTEXT, P.OPT_ABORT]


@pytest.mark.parametrize("server, error", [
    (NEWSTYLE + _rep(P.OPT_STRUCTURED_REPLY, P.REP_ACK)
     + _rep(P.OPT_SET_META_CONTEXT, P.REP_META_CONTEXT, P.encode_rep_meta_context(1, "qemu:dirty-bitmap:x")),
     "did not ask for"),
    (NEWSTYLE + _rep(P.OPT_STRUCTURED_REPLY, P.REP_ACK) + _rep(P.OPT_SET_META_CONTEXT, P.REP_ACK)
     + _rep(P.OPT_GO, P.REP_ACK), "without NBD_INFO_EXPORT"),
    (NEWSTYLE + _rep(P.OPT_STRUCTURED_REPLY, P.REP_SERVER, bytes(4)), "unexpected reply type"),
    (NEWSTYLE + _rep(P.OPT_GO, P.REP_ACK), "option reply for option 7, expected 8"),
])
def test_server_mistakes_are_protocol_errors(server, error):
    hs = _machine(dict(meta_contexts=["base:allocation"]))
    with pytest.raises(NbdProtocolError, match=error):
        hs.receive(server)
    assert hs.state == H.FAILED


def test_go_errors_other_than_unsupported_end_the_handshake():
    with pytest.raises(NbdNegotiationError, match="TLS required.*nbds://"):
        _machine(dict(structured=False)).receive(NEWSTYLE + _rep(P.OPT_GO, P.REP_ERR_TLS_REQD))


def test_export_name_close_means_no_such_export():
    hs = _machine(dict())
    hs.receive(PLAIN_NEWSTYLE)
    assert hs.state == H.AWAIT_EXPORT
    assert "no export 'disk'" in str(hs.connection_lost(ConnectionError("closed")))


# -- any split of the server's bytes gives the same conversation -------------------------------------------

@settings(max_examples=60, deadline=None)
@given(st.sampled_from(sorted(PATHS)), st.lists(st.integers(0, 1 << 16), max_size=12))
def test_any_byte_split_gives_the_same_actions_and_result(name, cuts):
    args, before, after = PATHS[name]
    assert _run(args, before, after, cuts)[::2] == _run(args, before, after)[::2]


# -- the rule that makes it sans-IO ---------------------------------------------------------------------------

def test_the_codec_and_the_machine_import_no_io_module():
    # -S: site-packages' start-up hooks (certifi, .pth files) import threading themselves
    code = ("import sys; import nbdboot.nbd.protocol, nbdboot.nbd.handshake; "
            "print(' '.join(m for m in ('socket', '_socket', 'ssl', '_ssl', 'select', 'selectors', 'threading') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "PYTHONPATH": ROOT}, check=True)
    assert out.stdout.strip() == ""


# -- the oldstyle greeting against the real client ---------------------------------------------------------------

def test_client_opens_an_oldstyle_export_from_encode_oldstyle_greeting():
    """A loopback server speaking oldstyle from the codec's encoder, answering one READ with a simple reply."""
    srv = socket.create_server(("127.0.0.1", 0))
    srv.settimeout(15)
    data = bytes(range(256)) * 2
    seen = []

    def serve():
        conn, _ = srv.accept()
        with conn:
            conn.settimeout(15)
            conn.sendall(P.encode_oldstyle_greeting(4 * MiB, P.TFLAG_HAS_FLAGS | P.TFLAG_READ_ONLY))
            head = b""
            while len(head) < P.REQUEST_SIZE:
                head += conn.recv(P.REQUEST_SIZE - len(head))
            flags, cmd, cookie, offset, length = P.decode_request(head)
            seen.append((cmd, offset, length))
            conn.sendall(P.encode_simple_reply(cookie) + data[:length])
            conn.recv(P.REQUEST_SIZE)   # DISC

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        with NbdClient(f"nbd://127.0.0.1:{srv.getsockname()[1]}/", reconnect=False, timeout=15) as c:
            assert (c.protocol, c.size, c.read_only, c.structured) == ("oldstyle", 4 * MiB, True, False)
            assert c.pread(512, 4096) == data
        t.join(15)
        assert seen == [(P.CMD_READ, 4096, 512)]
    finally:
        srv.close()
