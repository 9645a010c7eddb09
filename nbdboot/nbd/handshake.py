"""The client side of the NBD handshake as a state machine fed bytes (sans-IO, after h11's _state.py).

A ClientHandshake knows what the client wants (an export, a listing of exports or of meta contexts)
and the order of options that gets it. The transport loop is:

    hs = ClientHandshake(...)
    actions = []
    while hs.result is None:
        for action in actions:  Send(data): write it; UPGRADE_TLS: wrap the socket in TLS now,
                                then actions = hs.tls_established()
        actions = hs.receive(read exactly hs.needed bytes)
    hs.result  # an Export, or a list for the listing goals

A listing goal's result comes with the ABORT to send; the machine then waits in AWAIT_ABORT_REPLY
for the ACK, which a transport may wait for briefly or not at all (servers may just close).

`needed` is exact: the machine never asks for a byte the server has not been told to send, so a
transport that reads `needed` bytes never reads past the STARTTLS ACK into the TLS handshake, nor
past the handshake into transmission. Every state and the transitions out of it are in TRANSITIONS;
a step the table does not allow is a bug in the machine and raises RuntimeError. Anything the server
gets wrong raises NbdProtocolError (or NbdNegotiationError/NbdTLSError for refusals).
"""

from __future__ import annotations

from collections import namedtuple

from nbdboot.nbd import protocol as P
from nbdboot.nbd.errors import NbdConnectionError, NbdNegotiationError, NbdProtocolError, NbdTLSError

MAX_EXPORTS = 10000          # NBD_OPT_LIST replies `ls` accepts
MAX_META_CONTEXTS = 10000    # meta contexts `info` accepts

# -- states ---------------------------------------------------------------------------------------
AWAIT_GREETING = "AWAIT_GREETING"              # 16 bytes: NBDMAGIC + IHAVEOPT or the oldstyle magic
AWAIT_OLDSTYLE = "AWAIT_OLDSTYLE"              # 136 bytes: size, flags, 124 zeros
AWAIT_HANDSHAKE_FLAGS = "AWAIT_HANDSHAKE_FLAGS"  # 2 bytes of newstyle handshake flags
OPTIONS = "OPTIONS"                            # the client's turn: next option, or done
AWAIT_REPLY = "AWAIT_REPLY"                    # 20-byte option reply header
AWAIT_REPLY_DATA = "AWAIT_REPLY_DATA"          # that reply's payload
TLS_UPGRADE = "TLS_UPGRADE"                    # STARTTLS acknowledged: the transport wraps the socket
AWAIT_EXPORT = "AWAIT_EXPORT"                  # EXPORT_NAME's unframed size + flags (10 bytes)
AWAIT_ZEROES = "AWAIT_ZEROES"                  # its 124 bytes of padding
AWAIT_ABORT_REPLY = "AWAIT_ABORT_REPLY"        # ABORT's ACK (a bare close is as good)
TRANSMISSION = "TRANSMISSION"                  # handshake over, export open
CLOSED = "CLOSED"                              # a listing goal reached; the connection is done
FAILED = "FAILED"

# -- what moves the machine: (state, event) -> next state ---------------------------------------------
TRANSITIONS = {
    AWAIT_GREETING: {"newstyle": AWAIT_HANDSHAKE_FLAGS, "oldstyle": AWAIT_OLDSTYLE},
    AWAIT_OLDSTYLE: {"export": TRANSMISSION, "give_up": CLOSED},
    AWAIT_HANDSHAKE_FLAGS: {"flags": OPTIONS},
    OPTIONS: {"send_option": AWAIT_REPLY, "send_export_name": AWAIT_EXPORT,
              "send_abort": AWAIT_ABORT_REPLY, "give_up": CLOSED, "go_acked": TRANSMISSION},
    AWAIT_REPLY: {"reply_with_data": AWAIT_REPLY_DATA, "final": OPTIONS,
                  "starttls_acked": TLS_UPGRADE},
    AWAIT_REPLY_DATA: {"reply": AWAIT_REPLY, "final": OPTIONS},
    TLS_UPGRADE: {"tls_established": OPTIONS},
    AWAIT_EXPORT: {"export": TRANSMISSION, "export_padded": AWAIT_ZEROES},
    AWAIT_ZEROES: {"zeroes": TRANSMISSION},
    AWAIT_ABORT_REPLY: {"final": CLOSED},
    TRANSMISSION: {},
    CLOSED: {},
    FAILED: {},
}

# Bytes each state waits for; a state not listed waits for none (AWAIT_REPLY_DATA: the reply's length).
_NEEDED = {AWAIT_GREETING: P.GREETING_SIZE, AWAIT_OLDSTYLE: P.OLDSTYLE_REST_SIZE, AWAIT_HANDSHAKE_FLAGS: 2,
           AWAIT_REPLY: P.OPTION_REPLY_HEADER_SIZE, AWAIT_EXPORT: P.EXPORT_NAME_REPLY_SIZE,
           AWAIT_ZEROES: 124, AWAIT_ABORT_REPLY: P.OPTION_REPLY_HEADER_SIZE}

# -- actions for the transport ----------------------------------------------------------------------
Send = namedtuple("Send", "data")
UPGRADE_TLS = "UPGRADE_TLS"

# -- goals --------------------------------------------------------------------------------------------
GOAL_EXPORT = "export"              # open the export for transmission -> Export
GOAL_LIST = "list"                  # NBD_OPT_LIST -> [(name, description)]
GOAL_LIST_META = "list_meta"        # NBD_OPT_LIST_META_CONTEXT -> [names]

_OPTION_NAMES = {P.OPT_LIST: "NBD_OPT_LIST", P.OPT_LIST_META_CONTEXT: "NBD_OPT_LIST_META_CONTEXT",
                 P.OPT_SET_META_CONTEXT: "NBD_OPT_SET_META_CONTEXT"}


class Export:
    """What negotiation told us about the export."""

    __slots__ = ("size", "flags", "block_sizes", "structured", "contexts", "name", "description",
                 "protocol", "tls")

    def __init__(self, size: int = 0, flags: int = P.TFLAG_HAS_FLAGS,
                 block_sizes: P.BlockSizes = P.BlockSizes(), structured: bool = False,
                 contexts: dict[int, str] | None = None, name: str = "", description: str = "",
                 protocol: str = "newstyle-fixed", tls: bool = False):
        self.size = size
        self.flags = flags
        self.block_sizes = block_sizes
        self.structured = structured
        self.contexts = {} if contexts is None else contexts   # id -> name
        self.name = name
        self.description = description
        self.protocol = protocol
        self.tls = tls

    def __repr__(self) -> str:
        return (f"Export({self.name!r}, size={self.size}, flags={self.flags:#x}, {self.protocol}"
                f"{', structured' if self.structured else ''}{', tls' if self.tls else ''})")

    def same_shape(self, other: "Export") -> bool:
        return (self.size, self.flags, self.block_sizes) == (other.size, other.flags, other.block_sizes)


class ClientHandshake:
    """One client handshake: fed the server's bytes, returns what to send and when to start TLS."""

    def __init__(self, goal: str = GOAL_EXPORT, export: str = "", *, structured: bool = True,
                 meta_contexts=(), queries=(), tls: bool = False):
        self.goal = goal
        self.export_name = export
        self.want_structured = structured
        self.meta_queries = list(meta_contexts) if goal == GOAL_EXPORT else list(queries)
        self.want_tls = tls
        self.state = AWAIT_GREETING
        self.fixed = True
        self.no_zeroes = False
        self.tls = False
        self.structured = False
        self.contexts: dict[int, str] = {}
        self.result = None                 # Export or list, once the goal is reached
        self._plan: list[str] = []         # options still to send, in order
        self._option = 0                   # the option whose replies we read
        self._reply: P.OptionReply | None = None
        self._count = 0                    # replies to the current option so far
        self._info: Export | None = None   # GO's answers so far
        self._got_export = False
        self._found: list = []             # LIST or LIST_META_CONTEXT entries so far
        self._buf = bytearray()
        self.history: list[tuple[str, str, str]] = []   # (state, event, next state), for logs and tests

    # -- the table ----------------------------------------------------------------------------------
    def _go(self, event: str) -> None:
        try:
            new = TRANSITIONS[self.state][event]
        except KeyError:
            raise RuntimeError(f"handshake: no transition from {self.state} on {event!r}") from None
        self.history.append((self.state, event, new))
        self.state = new

    @property
    def needed(self) -> int:
        """Bytes the machine waits for now (0: none; the transport has an action to do, or it is over)."""
        if self.state == AWAIT_REPLY_DATA:
            return self._reply.length
        return _NEEDED.get(self.state, 0)

    # -- inputs ---------------------------------------------------------------------------------------
    def receive(self, data) -> list:
        """Bytes from the server -> actions for the transport, in order."""
        self._buf += data
        out: list = []
        try:
            while True:
                if self.state == OPTIONS:
                    self._choose(out)
                    continue
                n = self.needed
                if self.state == TLS_UPGRADE and self._buf:
                    # Plaintext after the ACK would be read as if it came through TLS (a MitM injection).
                    raise NbdProtocolError("server sent data between the STARTTLS ACK and the TLS handshake")
                if not n or len(self._buf) < n:
                    return out
                chunk = bytes(self._buf[:n])
                del self._buf[:n]
                self._handle(chunk, out)
        except (NbdProtocolError, NbdNegotiationError, NbdTLSError):
            self.state = FAILED
            raise

    def tls_established(self) -> list:
        """The transport has wrapped the socket: all that STARTTLS negotiated before is void."""
        self._go("tls_established")
        self.tls = True
        return self.receive(b"")

    def connection_lost(self, error: NbdConnectionError) -> Exception:
        """What a lost connection means in this state (the exception for the transport to raise)."""
        if self.state == AWAIT_EXPORT:   # EXPORT_NAME has no error reply: servers close instead
            return NbdNegotiationError(f"server closed the connection: no export {self.export_name!r}?")
        return error

    # -- server messages --------------------------------------------------------------------------------
    def _handle(self, data: bytes, out: list) -> None:
        state = self.state
        if state == AWAIT_GREETING:
            style = P.decode_greeting(data)
            self._go(style)
        elif state == AWAIT_OLDSTYLE:
            g = P.decode_oldstyle_rest(data)
            if self.goal != GOAL_EXPORT:
                self._give_up_listing()
                return
            if self.want_tls:
                raise NbdTLSError("TLS required but the server speaks oldstyle NBD")
            self._go("export")
            self.result = Export(size=g.size, flags=g.transmission_flags, protocol="oldstyle")
        elif state == AWAIT_HANDSHAKE_FLAGS:
            hflags = int.from_bytes(data, "big")
            self.fixed = bool(hflags & P.FLAG_FIXED_NEWSTYLE)
            self.no_zeroes = bool(hflags & P.FLAG_NO_ZEROES)
            self._go("flags")
            cflags = ((P.FLAG_C_FIXED_NEWSTYLE if self.fixed else 0)
                      | (P.FLAG_C_NO_ZEROES if self.no_zeroes else 0))
            out.append(Send(P.encode_client_flags(cflags)))
            self._plan = self._initial_plan()
        elif state == AWAIT_REPLY:
            reply = P.decode_option_reply_header(data, self._option)
            self._check_reply(reply)
            if reply.length:
                self._reply = reply
                self._go("reply_with_data")
            else:
                self._on_reply(reply, b"", out)
        elif state == AWAIT_REPLY_DATA:
            self._on_reply(self._reply, data, out)
        elif state == AWAIT_EXPORT:
            size, flags = P.decode_export_name_reply(data)
            self._info = Export(size=size, flags=flags, name=self.export_name,
                                protocol="newstyle-fixed" if self.fixed else "newstyle")
            if self.no_zeroes:
                self._go("export")
                self._finish_export()
            else:
                self._go("export_padded")
        elif state == AWAIT_ZEROES:
            self._go("zeroes")
            self._finish_export()
        elif state == AWAIT_ABORT_REPLY:
            P.decode_option_reply_header(data, P.OPT_ABORT)
            self._go("final")

    def _give_up_listing(self) -> None:
        """Oldstyle or plain newstyle: no options to list with."""
        if self.goal == GOAL_LIST:
            raise NbdNegotiationError("server cannot list exports (not fixed newstyle)")
        self._go("give_up")
        self.result = []

    def _check_reply(self, reply: P.OptionReply) -> None:
        self._count += 1
        opt = self._option
        max_replies, max_length = 0, P.MAX_OPTION_REPLY
        if opt == P.OPT_LIST:
            max_replies, max_length = MAX_EXPORTS + 1, 4 + 2 * P.MAX_STRING
        elif opt in (P.OPT_LIST_META_CONTEXT, P.OPT_SET_META_CONTEXT):
            max_replies, max_length = MAX_META_CONTEXTS + 1, 4 + P.MAX_STRING
        name = _OPTION_NAMES.get(opt, f"option {opt}")
        if max_replies and self._count > max_replies:
            raise NbdProtocolError(f"server sent more than {max_replies - 1} entries in reply to {name}")
        if reply.length > max_length and not reply.is_error:
            raise NbdProtocolError(f"server sent a {reply.length}-byte reply to {name} "
                                   f"(at most {max_length} expected)")

    # -- the client's choices -----------------------------------------------------------------------------
    def _initial_plan(self) -> list[str]:
        if self.goal != GOAL_EXPORT:
            if not self.fixed:
                return ["give_up"]
            plan = ["starttls"] if self.want_tls else []
            if self.goal == GOAL_LIST:
                return plan + ["list", "abort"]
            return plan + ["structured", "list_meta", "abort"]
        if self.want_tls and not self.fixed:
            raise NbdTLSError("TLS required but the server does not speak fixed newstyle")
        plan = ["starttls"] if self.want_tls else []
        if self.fixed:
            if self.want_structured:
                plan.append("structured")
            plan.append("go")
        return plan + ["export_name"]

    def _choose(self, out: list) -> None:
        """OPTIONS: send the next option of the plan (or stop)."""
        step = self._plan.pop(0)
        if step == "give_up":
            self._give_up_listing()
            return
        if step == "export_name":
            self._go("send_export_name")
            out.append(Send(P.encode_option(P.OPT_EXPORT_NAME, self.export_name.encode())))
            return
        if step == "abort":
            self._go("send_abort")
            out.append(Send(P.encode_option(P.OPT_ABORT)))
            return
        if step == "starttls":
            opt, data = P.OPT_STARTTLS, b""
        elif step == "structured":
            opt, data = P.OPT_STRUCTURED_REPLY, b""
        elif step == "meta":
            opt, data = P.OPT_SET_META_CONTEXT, P.encode_meta_query(self.export_name, self.meta_queries)
        elif step == "list_meta":
            opt, data = P.OPT_LIST_META_CONTEXT, P.encode_meta_query(self.export_name, self.meta_queries)
        elif step == "list":
            opt, data = P.OPT_LIST, b""
        elif step == "go":
            self._info = Export(name=self.export_name)
            self._got_export = False
            opt = P.OPT_GO
            data = P.encode_info_request(self.export_name, [P.INFO_BLOCK_SIZE, P.INFO_NAME, P.INFO_DESCRIPTION])
        else:
            raise RuntimeError(f"handshake: unknown plan step {step!r}")
        self._option, self._count = opt, 0
        self._go("send_option")
        out.append(Send(P.encode_option(opt, data)))

    # -- option replies -------------------------------------------------------------------------------------
    def _on_reply(self, reply: P.OptionReply, payload: bytes, out: list) -> None:
        opt = self._option
        final = reply.type == P.REP_ACK or reply.is_error
        if opt in (P.OPT_STARTTLS, P.OPT_STRUCTURED_REPLY):
            if not final:
                raise NbdProtocolError(f"unexpected reply type {reply.type:#x} to option {opt}")
            if opt == P.OPT_STARTTLS:
                if reply.is_error:
                    raise NbdTLSError("server refused STARTTLS")
                self._go("starttls_acked")
                self.structured, self.contexts = False, {}
                out.append(UPGRADE_TLS)
                return
            self.structured = reply.type == P.REP_ACK
            if self.goal == GOAL_EXPORT:
                if self.structured and self.meta_queries:
                    self._plan.insert(0, "meta")
            elif not self.structured:
                self._go("final")
                self._go("give_up")
                self.result = []
                return
        elif opt == P.OPT_LIST:
            if reply.type == P.REP_SERVER:
                self._found.append(P.decode_rep_server(payload))
            elif reply.is_error:
                raise NbdNegotiationError("cannot list exports: " + P.option_error_message(reply, payload),
                                          reply.type)
            elif reply.type != P.REP_ACK:
                raise NbdProtocolError(f"unexpected reply type {reply.type:#x} to LIST")
            if reply.type == P.REP_ACK:
                self.result = self._found
        elif opt in (P.OPT_SET_META_CONTEXT, P.OPT_LIST_META_CONTEXT):
            if reply.type == P.REP_META_CONTEXT:
                cid, name = P.decode_rep_meta_context(payload)
                if opt == P.OPT_LIST_META_CONTEXT:
                    self._found.append(name)   # LIST's ids mean nothing (servers send 0 for all)
                elif name not in self.meta_queries:
                    raise NbdProtocolError(f"server selected meta context {name!r} we did not ask for")
                else:
                    self.contexts[cid] = name
            elif reply.is_error:
                self.contexts, self._found = {}, []
            elif reply.type != P.REP_ACK:
                raise NbdProtocolError(f"unexpected reply type {reply.type:#x} to meta context option")
            if final and opt == P.OPT_LIST_META_CONTEXT:
                self.result = self._found
        elif opt == P.OPT_GO:
            if self._on_go_reply(reply, payload):
                return
        self._go("final" if final else "reply")

    def _on_go_reply(self, reply: P.OptionReply, payload: bytes) -> bool:
        """True if the reply ended the handshake (GO acknowledged)."""
        info = self._info
        if reply.type == P.REP_INFO:
            kind, value = P.decode_info(payload)
            if kind == P.INFO_EXPORT:
                info.size, info.flags = value
                self._got_export = True
            elif kind == P.INFO_BLOCK_SIZE:
                broken = P.block_size_violation(*value)
                if broken:
                    raise NbdProtocolError(f"server sent an invalid {broken}")
                info.block_sizes = P.BlockSizes(*value)
            elif kind == P.INFO_NAME:
                info.name = value
            elif kind == P.INFO_DESCRIPTION:
                info.description = value
        elif reply.is_error:
            if reply.type == P.REP_ERR_UNSUP:
                return False   # fall back to EXPORT_NAME, next in the plan
            msg = P.option_error_message(reply, payload)
            hint = " (try nbds://)" if reply.type == P.REP_ERR_TLS_REQD else ""
            raise NbdNegotiationError(f"export {self.export_name!r}: {msg}{hint}", reply.type)
        elif reply.type != P.REP_ACK:
            raise NbdProtocolError(f"unexpected reply type {reply.type:#x} to GO")
        else:
            if not self._got_export:
                raise NbdProtocolError("GO acknowledged without NBD_INFO_EXPORT")
            info.protocol = "newstyle-fixed"
            self._go("final")
            self._go("go_acked")
            self._finish_export()
            return True
        return False

    def _finish_export(self) -> None:
        info = self._info
        info.structured = self.structured
        info.contexts = self.contexts if self.structured else {}
        info.tls = self.tls
        if not self.structured:
            info.flags &= ~P.TFLAG_SEND_DF
        self.result = info
