"""The NBD wire protocol, without sockets (sans-IO, in the style of h11).

Two layers:

* Codec functions: encode/decode every message of the handshake (greetings,
  options, option replies, INFO records, LIST and meta-context replies) and of
  transmission (requests, simple replies, structured chunks). Client and
  server both build on them.
* ReplyTracker: the client's view of transmission. It knows what was asked
  (cookie -> Request) and validates every reply header and chunk against it:
  magic, cookie, chunk kinds we negotiated, lengths, data inside the request
  and never overlapping, full coverage of a successful READ. It never touches
  a socket: ReplyTracker.read_reply, the one reply loop, pulls each header and
  payload through an `io` object and tells it where READ data goes. The
  client's io is its socket link (READ data is received straight into the
  caller's buffer); ReplyParser's is a buffered reply turned into h11-style
  events, for tests and fuzzing fed arbitrary bytes.

The client's handshake is the state machine in nbdboot.nbd.handshake, built on
the codec functions here.

Anything a server gets wrong raises NbdProtocolError; a request the server
failed carries its errno in Request.error (an event for ReplyParser), never as
an exception that kills the connection.
"""

from __future__ import annotations

import bisect
import struct
from collections import namedtuple

from nbdboot.nbd.errors import NbdProtocolError, known_errno

# -- magics -------------------------------------------------------------------
NBDMAGIC = 0x4E42444D41474943
IHAVEOPT = 0x49484156454F5054
OLD_VERSION = 0x00420281861253
REP_MAGIC = 0x0003E889045565A9
REQUEST_MAGIC = 0x25609513
SIMPLE_REPLY_MAGIC = 0x67446698
STRUCTURED_REPLY_MAGIC = 0x668E33EF

# -- handshake flags ------------------------------------------------------------
FLAG_FIXED_NEWSTYLE = 1 << 0
FLAG_NO_ZEROES = 1 << 1
FLAG_C_FIXED_NEWSTYLE = 1 << 0
FLAG_C_NO_ZEROES = 1 << 1

# -- options ---------------------------------------------------------------------
OPT_EXPORT_NAME = 1
OPT_ABORT = 2
OPT_LIST = 3
OPT_STARTTLS = 5
OPT_INFO = 6
OPT_GO = 7
OPT_STRUCTURED_REPLY = 8
OPT_LIST_META_CONTEXT = 9
OPT_SET_META_CONTEXT = 10
OPT_EXTENDED_HEADERS = 11

REP_ACK = 1
REP_SERVER = 2
REP_INFO = 3
REP_META_CONTEXT = 4
REP_FLAG_ERROR = 1 << 31
REP_ERR_UNSUP = REP_FLAG_ERROR | 1
REP_ERR_POLICY = REP_FLAG_ERROR | 2
REP_ERR_INVALID = REP_FLAG_ERROR | 3
REP_ERR_PLATFORM = REP_FLAG_ERROR | 4
REP_ERR_TLS_REQD = REP_FLAG_ERROR | 5
REP_ERR_UNKNOWN = REP_FLAG_ERROR | 6
REP_ERR_SHUTDOWN = REP_FLAG_ERROR | 7
REP_ERR_BLOCK_SIZE_REQD = REP_FLAG_ERROR | 8
REP_ERR_TOO_BIG = REP_FLAG_ERROR | 9

REP_ERROR_NAMES = {
    REP_ERR_UNSUP: "unsupported", REP_ERR_POLICY: "forbidden by policy",
    REP_ERR_INVALID: "invalid", REP_ERR_PLATFORM: "not available on this platform",
    REP_ERR_TLS_REQD: "TLS required", REP_ERR_UNKNOWN: "unknown export",
    REP_ERR_SHUTDOWN: "server shutting down", REP_ERR_BLOCK_SIZE_REQD: "block size required",
    REP_ERR_TOO_BIG: "request too big",
}

INFO_EXPORT = 0
INFO_NAME = 1
INFO_DESCRIPTION = 2
INFO_BLOCK_SIZE = 3

# -- transmission flags ------------------------------------------------------------
TFLAG_HAS_FLAGS = 1 << 0
TFLAG_READ_ONLY = 1 << 1
TFLAG_SEND_FLUSH = 1 << 2
TFLAG_SEND_FUA = 1 << 3
TFLAG_ROTATIONAL = 1 << 4
TFLAG_SEND_TRIM = 1 << 5
TFLAG_SEND_WRITE_ZEROES = 1 << 6
TFLAG_SEND_DF = 1 << 7
TFLAG_CAN_MULTI_CONN = 1 << 8
TFLAG_SEND_RESIZE = 1 << 9
TFLAG_SEND_CACHE = 1 << 10
TFLAG_SEND_FAST_ZERO = 1 << 11


# -- commands ------------------------------------------------------------------------
CMD_READ = 0
CMD_WRITE = 1
CMD_DISC = 2
CMD_FLUSH = 3
CMD_TRIM = 4
CMD_CACHE = 5
CMD_WRITE_ZEROES = 6
CMD_BLOCK_STATUS = 7

CMD_NAMES = {CMD_READ: "READ", CMD_WRITE: "WRITE", CMD_DISC: "DISC", CMD_FLUSH: "FLUSH",
             CMD_TRIM: "TRIM", CMD_CACHE: "CACHE", CMD_WRITE_ZEROES: "WRITE_ZEROES",
             CMD_BLOCK_STATUS: "BLOCK_STATUS"}

CMD_FLAG_FUA = 1 << 0
CMD_FLAG_NO_HOLE = 1 << 1
CMD_FLAG_DF = 1 << 2
CMD_FLAG_REQ_ONE = 1 << 3
CMD_FLAG_FAST_ZERO = 1 << 4

REPLY_FLAG_DONE = 1 << 0

REPLY_TYPE_NONE = 0
REPLY_TYPE_OFFSET_DATA = 1
REPLY_TYPE_OFFSET_HOLE = 2
REPLY_TYPE_BLOCK_STATUS = 5
REPLY_TYPE_ERROR = (1 << 15) | 1
REPLY_TYPE_ERROR_OFFSET = (1 << 15) | 2

STATE_HOLE = 1
STATE_ZERO = 2

CONTEXT_BASE_ALLOCATION = "base:allocation"

# -- limits ----------------------------------------------------------------------------
MAX_STRING = 4096
MAX_OPTION_REPLY = 16 << 20          # LIST of a big server fits easily
MAX_CHUNK_PAYLOAD = (64 << 20) + 8   # libnbd's cap: a 64 MiB READ plus its offset
MAX_EXPORT_SIZE = (1 << 63) - 1
DEFAULT_MAX_BLOCK = 32 << 20         # what servers accept when they advertise nothing

# -- structs -----------------------------------------------------------------------------
_GREETING = struct.Struct(">QQ")
_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")
_OLDSTYLE_REST = struct.Struct(">QI")          # size, flags (then 124 zeros)
_OPTION = struct.Struct(">QII")                # IHAVEOPT, option, length
_OPTION_REPLY = struct.Struct(">QIII")         # REP_MAGIC, option, type, length
_EXPORT_NAME_REPLY = struct.Struct(">QH")      # size, transmission flags
_INFO_EXPORT = struct.Struct(">HQH")
_INFO_BLOCK_SIZE = struct.Struct(">HIII")
REQUEST = struct.Struct(">IHHQQI")             # magic, flags, type, cookie, offset, length
SIMPLE_REPLY = struct.Struct(">IIQ")           # magic, error, cookie
CHUNK = struct.Struct(">IHHQI")                # magic, flags, type, cookie, length
_HOLE = struct.Struct(">QI")
_ERROR_HEAD = struct.Struct(">IH")
_EXTENT = struct.Struct(">II")

GREETING_SIZE = 16
OLDSTYLE_REST_SIZE = 12 + 124
OPTION_HEADER_SIZE = _OPTION.size
OPTION_REPLY_HEADER_SIZE = _OPTION_REPLY.size
REQUEST_SIZE = REQUEST.size
REPLY_PREFIX_SIZE = SIMPLE_REPLY.size          # read this much, then dispatch on magic
CHUNK_SIZE = CHUNK.size


def _check_string(data: bytes, what: str) -> str:
    if len(data) > MAX_STRING:
        raise NbdProtocolError(f"{what} is {len(data)} bytes (limit {MAX_STRING})")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise NbdProtocolError(f"{what} is not UTF-8") from None


def _encode_string(text: str, what: str) -> bytes:
    data = text.encode("utf-8")
    if len(data) > MAX_STRING:
        raise ValueError(f"{what} is longer than {MAX_STRING} bytes")
    return data


# =============================================================================
# Handshake
# =============================================================================

def encode_newstyle_greeting(handshake_flags: int = FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES) -> bytes:
    return _GREETING.pack(NBDMAGIC, IHAVEOPT) + _U16.pack(handshake_flags)


def encode_oldstyle_greeting(size: int, flags: int) -> bytes:
    return _GREETING.pack(NBDMAGIC, OLD_VERSION) + _OLDSTYLE_REST.pack(size, flags) + bytes(124)


# Records are namedtuples, not frozen dataclasses: importing `dataclasses` and generating each class
# cost several ms of every command's start-up, and Chunk/ReadData are built per reply.

# handshake_flags is newstyle's; size and transmission_flags are oldstyle's.
Greeting = namedtuple("Greeting", "oldstyle handshake_flags size transmission_flags", defaults=(0, 0, 0))


def decode_greeting(head: bytes) -> str:
    """First 16 bytes -> "newstyle" (2 more bytes follow) or "oldstyle" (136 follow)."""
    magic, second = _GREETING.unpack(head)
    if magic != NBDMAGIC:
        raise NbdProtocolError(f"not an NBD server (magic {magic:#018x})")
    if second == IHAVEOPT:
        return "newstyle"
    if second == OLD_VERSION:
        return "oldstyle"
    raise NbdProtocolError(f"unknown handshake style {second:#018x}")


def decode_oldstyle_rest(rest: bytes) -> Greeting:
    size, flags = _OLDSTYLE_REST.unpack_from(rest)
    size = check_export_size(size)
    return Greeting(True, size=size, transmission_flags=check_transmission_flags(flags & 0xFFFF))


def check_export_size(size: int) -> int:
    if size > MAX_EXPORT_SIZE:
        raise NbdProtocolError(f"export size {size} is not below 2^63")
    return size


def check_transmission_flags(flags: int) -> int:
    if not flags & TFLAG_HAS_FLAGS:
        raise NbdProtocolError("transmission flags lack NBD_FLAG_HAS_FLAGS")
    if not flags & TFLAG_SEND_WRITE_ZEROES:
        flags &= ~TFLAG_SEND_FAST_ZERO  # meaningless without WRITE_ZEROES (libnbd ignores it too)
    return flags


def encode_client_flags(flags: int) -> bytes:
    return _U32.pack(flags)


def encode_option(option: int, data: bytes = b"") -> bytes:
    return _OPTION.pack(IHAVEOPT, option, len(data)) + data


def decode_option_header(head: bytes) -> tuple[int, int]:
    """Server side: 16 bytes -> (option, length of data that follows)."""
    magic, option, length = _OPTION.unpack(head)
    if magic != IHAVEOPT:
        raise NbdProtocolError(f"bad option magic {magic:#018x}")
    return option, length


def encode_option_reply(option: int, reply_type: int, data: bytes = b"") -> bytes:
    return _OPTION_REPLY.pack(REP_MAGIC, option, reply_type, len(data)) + data


class OptionReply(namedtuple("OptionReply", "option type length")):
    __slots__ = ()

    @property
    def is_error(self) -> bool:
        return bool(self.type & REP_FLAG_ERROR)


def decode_option_reply_header(head: bytes, option: int) -> OptionReply:
    magic, echoed, reply_type, length = _OPTION_REPLY.unpack(head)
    if magic != REP_MAGIC:
        raise NbdProtocolError(f"bad option reply magic {magic:#018x}")
    if echoed != option:
        raise NbdProtocolError(f"option reply for option {echoed}, expected {option}")
    if length > MAX_OPTION_REPLY:
        raise NbdProtocolError(f"option reply of {length} bytes is too long")
    if reply_type == REP_ACK and length:
        raise NbdProtocolError("option ACK with a payload")
    return OptionReply(echoed, reply_type, length)


def option_error_message(reply: OptionReply, data: bytes) -> str:
    text = data[:MAX_STRING].decode("utf-8", "replace")
    name = REP_ERROR_NAMES.get(reply.type, f"error {reply.type & ~REP_FLAG_ERROR:#x}")
    return f"{name}: {text}" if text else name


# -- GO / INFO -------------------------------------------------------------------------------
def encode_info_request(name: str, infos: list[int] | tuple[int, ...] = ()) -> bytes:
    raw = _encode_string(name, "export name")
    return _U32.pack(len(raw)) + raw + _U16.pack(len(infos)) + b"".join(_U16.pack(i) for i in infos)


def decode_info_request(data: bytes) -> tuple[str, list[int]]:
    if len(data) < 6:
        raise NbdProtocolError("INFO/GO request too short")
    (n,) = _U32.unpack_from(data)
    if 4 + n + 2 > len(data):
        raise NbdProtocolError("INFO/GO export name runs past the request")
    name = _check_string(data[4:4 + n], "export name")
    (count,) = _U16.unpack_from(data, 4 + n)
    if len(data) != 4 + n + 2 + 2 * count:
        raise NbdProtocolError("INFO/GO request length does not match its info count")
    infos = [_U16.unpack_from(data, 6 + n + 2 * i)[0] for i in range(count)]
    return name, infos


def encode_info_export(size: int, flags: int) -> bytes:
    return _INFO_EXPORT.pack(INFO_EXPORT, size, flags)


def encode_info_block_size(minimum: int, preferred: int, maximum: int) -> bytes:
    return _INFO_BLOCK_SIZE.pack(INFO_BLOCK_SIZE, minimum, preferred, maximum)


def encode_info_string(info_type: int, text: str) -> bytes:
    return _U16.pack(info_type) + _encode_string(text, "info string")


# What a server that advertises nothing accepts.
BlockSizes = namedtuple("BlockSizes", "minimum preferred maximum", defaults=(1, 4096, DEFAULT_MAX_BLOCK))


def block_size_violation(minimum: int, preferred: int, maximum: int) -> str | None:
    """Which rule of the spec's "Block size constraints" NBD_INFO_BLOCK_SIZE breaks, if any."""
    def pow2(v):
        return v > 0 and v & (v - 1) == 0
    if not pow2(minimum) or minimum > 65536:
        return f"minimum block size {minimum}: it MUST be a power of 2 no larger than 64 KiB"
    if not pow2(preferred) or preferred < max(512, minimum):
        return (f"preferred block size {preferred}: it MUST be a power of 2 at least as large as "
                f"the minimum ({minimum}) and 512")
    if maximum != 0xFFFFFFFF and (maximum < preferred or maximum % minimum):
        return (f"maximum payload {maximum}: it MUST be at least the preferred size ({preferred}) and a "
                f"multiple of the minimum ({minimum}), or 0xffffffff")
    return None


def sane_block_sizes(minimum: int, preferred: int, maximum: int) -> bool:
    return block_size_violation(minimum, preferred, maximum) is None


def decode_info(data: bytes):
    """An NBD_REP_INFO payload -> (info type, value) or (type, None) if unknown."""
    if len(data) < 2:
        raise NbdProtocolError("NBD_REP_INFO shorter than its type")
    (info_type,) = _U16.unpack_from(data)
    if info_type == INFO_EXPORT:
        if len(data) != _INFO_EXPORT.size:
            raise NbdProtocolError(f"NBD_INFO_EXPORT of {len(data)} bytes, expected 12")
        _, size, flags = _INFO_EXPORT.unpack(data)
        return info_type, (check_export_size(size), check_transmission_flags(flags))
    if info_type == INFO_BLOCK_SIZE:
        if len(data) != _INFO_BLOCK_SIZE.size:
            raise NbdProtocolError(f"NBD_INFO_BLOCK_SIZE of {len(data)} bytes, expected 14")
        _, mn, pref, mx = _INFO_BLOCK_SIZE.unpack(data)
        return info_type, (mn, pref, mx)
    if info_type in (INFO_NAME, INFO_DESCRIPTION):
        return info_type, _check_string(bytes(data[2:]), "info string")
    return info_type, None


def encode_export_name_reply(size: int, flags: int, no_zeroes: bool) -> bytes:
    return _EXPORT_NAME_REPLY.pack(size, flags) + (b"" if no_zeroes else bytes(124))


def decode_export_name_reply(data: bytes) -> tuple[int, int]:
    size, flags = _EXPORT_NAME_REPLY.unpack_from(data)
    return check_export_size(size), check_transmission_flags(flags)


EXPORT_NAME_REPLY_SIZE = _EXPORT_NAME_REPLY.size


# -- LIST -------------------------------------------------------------------------------------
def encode_rep_server(name: str, description: str = "") -> bytes:
    raw = _encode_string(name, "export name")
    return _U32.pack(len(raw)) + raw + _encode_string(description, "description")


def decode_rep_server(data: bytes) -> tuple[str, str]:
    if len(data) < 4:
        raise NbdProtocolError("NBD_REP_SERVER too short")
    (n,) = _U32.unpack_from(data)
    if 4 + n > len(data):
        raise NbdProtocolError("NBD_REP_SERVER name runs past the reply")
    return _check_string(bytes(data[4:4 + n]), "export name"), _check_string(bytes(data[4 + n:]), "description")


# -- meta contexts -----------------------------------------------------------------------------
def encode_meta_query(export: str, queries: list[str] | tuple[str, ...]) -> bytes:
    raw = _encode_string(export, "export name")
    out = [_U32.pack(len(raw)), raw, _U32.pack(len(queries))]
    for q in queries:
        qb = _encode_string(q, "meta context")
        out += [_U32.pack(len(qb)), qb]
    return b"".join(out)


def decode_meta_query(data: bytes) -> tuple[str, list[str]]:
    try:
        (n,) = _U32.unpack_from(data)
        export = _check_string(bytes(data[4:4 + n]), "export name")
        pos = 4 + n
        (count,) = _U32.unpack_from(data, pos)
        pos += 4
        queries = []
        for _ in range(count):
            (qn,) = _U32.unpack_from(data, pos)
            if pos + 4 + qn > len(data):
                raise NbdProtocolError("meta context query runs past the request")
            queries.append(_check_string(bytes(data[pos + 4:pos + 4 + qn]), "meta context"))
            pos += 4 + qn
    except struct.error:
        raise NbdProtocolError("meta context request too short") from None
    if pos != len(data) or 4 + n > len(data):
        raise NbdProtocolError("meta context request length mismatch")
    return export, queries


def encode_rep_meta_context(context_id: int, name: str) -> bytes:
    return _U32.pack(context_id) + _encode_string(name, "meta context")


def decode_rep_meta_context(data: bytes) -> tuple[int, str]:
    if len(data) < 5:
        raise NbdProtocolError("NBD_REP_META_CONTEXT too short")
    (cid,) = _U32.unpack_from(data)
    return cid, _check_string(bytes(data[4:]), "meta context")


# =============================================================================
# Transmission: requests and replies on the wire
# =============================================================================

def encode_request(cmd: int, cookie: int, offset: int = 0, length: int = 0, flags: int = 0) -> bytes:
    return REQUEST.pack(REQUEST_MAGIC, flags, cmd, cookie, offset, length)


def decode_request(head: bytes) -> tuple[int, int, int, int, int]:
    """Server side: 28 bytes -> (flags, cmd, cookie, offset, length)."""
    magic, flags, cmd, cookie, offset, length = REQUEST.unpack(head)
    if magic != REQUEST_MAGIC:
        raise NbdProtocolError(f"bad request magic {magic:#010x}")
    return flags, cmd, cookie, offset, length


def encode_simple_reply(cookie: int, error: int = 0) -> bytes:
    return SIMPLE_REPLY.pack(SIMPLE_REPLY_MAGIC, error, cookie)


def encode_chunk_header(cookie: int, chunk_type: int, length: int, done: bool) -> bytes:
    return CHUNK.pack(STRUCTURED_REPLY_MAGIC, REPLY_FLAG_DONE if done else 0, chunk_type, cookie, length)


def encode_offset_data(cookie: int, offset: int, length: int, done: bool) -> bytes:
    """Header of an OFFSET_DATA chunk; `length` data bytes follow it."""
    return encode_chunk_header(cookie, REPLY_TYPE_OFFSET_DATA, 8 + length, done) + _U64.pack(offset)


def encode_offset_hole(cookie: int, offset: int, length: int, done: bool) -> bytes:
    return encode_chunk_header(cookie, REPLY_TYPE_OFFSET_HOLE, 12, done) + _HOLE.pack(offset, length)


def encode_block_status(cookie: int, context_id: int, extents, done: bool = True) -> bytes:
    body = _U32.pack(context_id) + b"".join(_EXTENT.pack(n, f) for n, f in extents)
    return encode_chunk_header(cookie, REPLY_TYPE_BLOCK_STATUS, len(body), done) + body


def encode_error_chunk(cookie: int, error: int, message: str = "", done: bool = True,
                       offset: int | None = None) -> bytes:
    msg = message.encode("utf-8")[:MAX_STRING]
    body = _ERROR_HEAD.pack(error, len(msg)) + msg
    kind = REPLY_TYPE_ERROR
    if offset is not None:
        body += _U64.pack(offset)
        kind = REPLY_TYPE_ERROR_OFFSET
    return encode_chunk_header(cookie, kind, len(body), done) + body


def encode_none_chunk(cookie: int) -> bytes:
    return encode_chunk_header(cookie, REPLY_TYPE_NONE, 0, True)


def drop_sent(views: list[memoryview], n: int) -> None:
    """Take the first `n` bytes off `views`, the pieces of a message: what is left after a partial send."""
    while n and views:
        if n >= len(views[0]):
            n -= len(views[0])
            views.pop(0)
        else:
            views[0] = views[0][n:]
            n = 0


# =============================================================================
# Client-side reply validation
# =============================================================================

class Request:
    """One request in flight, as the tracker sees it; transports may subclass it."""

    __slots__ = ("cookie", "cmd", "flags", "offset", "length", "_starts", "_ends", "seen",
                 "error", "message", "extents", "done", "__weakref__")

    def __init__(self, cmd: int, offset: int = 0, length: int = 0, flags: int = 0, cookie: int = 0):
        self.cookie = cookie
        self.cmd = cmd
        self.flags = flags
        self.offset = offset
        self.length = length
        self.reset()

    def reset(self) -> None:
        """Forget any reply progress (before re-sending after a reconnect)."""
        self._starts: list[int] = []
        self._ends: list[int] = []
        self.seen = 0
        self.error = 0
        self.message = ""
        self.extents: dict[int, list[tuple[int, int]]] = {}
        self.done = False

    def cover(self, start: int, count: int) -> None:
        """Record [start, start+count) of the request as delivered; overlap is an error."""
        end = start + count
        i = bisect.bisect_right(self._starts, start)
        if (i and self._ends[i - 1] > start) or (i < len(self._starts) and self._starts[i] < end):
            raise NbdProtocolError(f"overlapping read chunks in cookie {self.cookie}")
        self._starts.insert(i, start)
        self._ends.insert(i, end)
        self.seen += count

    def __repr__(self):
        return f"<{CMD_NAMES.get(self.cmd, self.cmd)} cookie={self.cookie} {self.offset}+{self.length}>"


class Chunk(namedtuple("Chunk", "request flags type length")):
    __slots__ = ()

    @property
    def done(self) -> bool:
        return bool(self.flags & REPLY_FLAG_DONE)


_BLOCK_STATUS_MAX = 8 + (1 << 20) * 8 + 4


class ReplyTracker:
    """Requests in flight and the rules their replies must follow."""

    def __init__(self, structured: bool = False, contexts: dict[int, str] | None = None,
                 max_payload: int = MAX_CHUNK_PAYLOAD, export_size: int | None = None):
        self.structured = structured
        self.export_size = export_size   # extents must stay inside it, when known
        self.contexts = dict(contexts or {})
        self.max_payload = max_payload
        self.pending: dict[int, Request] = {}

    def add(self, req: Request) -> None:
        if req.cookie in self.pending:
            raise ValueError(f"cookie {req.cookie} already in flight")
        self.pending[req.cookie] = req

    def _lookup(self, cookie: int) -> Request:
        req = self.pending.get(cookie)
        if req is None:
            raise NbdProtocolError(f"reply for unknown cookie {cookie:#x}")
        return req

    # -- first 16 bytes of every reply -------------------------------------------------------
    @staticmethod
    def reply_kind(prefix) -> int:
        (magic,) = _U32.unpack_from(prefix)
        if magic not in (SIMPLE_REPLY_MAGIC, STRUCTURED_REPLY_MAGIC):
            raise NbdProtocolError(f"bad reply magic {magic:#010x}")
        return magic

    def simple_reply(self, head) -> tuple[Request, int]:
        """A 16-byte simple reply -> (request, data bytes that follow).

        The request is complete once that data is in (call finish())."""
        magic, error, cookie = SIMPLE_REPLY.unpack_from(head)
        if magic != SIMPLE_REPLY_MAGIC:
            raise NbdProtocolError(f"bad reply magic {magic:#010x}")
        req = self._lookup(cookie)
        if req.cmd == CMD_READ and self.structured:
            raise NbdProtocolError("simple reply to READ after structured replies were negotiated")
        if req.cmd == CMD_BLOCK_STATUS and not error:
            raise NbdProtocolError("simple success reply to BLOCK_STATUS")
        if error:
            req.error = known_errno(error)
            return req, 0
        if req.cmd == CMD_READ:
            req.cover(0, req.length)
            return req, req.length
        return req, 0

    def chunk(self, head) -> Chunk:
        """A 20-byte structured chunk header, checked against its request."""
        magic, flags, kind, cookie, length = CHUNK.unpack_from(head)
        if magic != STRUCTURED_REPLY_MAGIC:
            raise NbdProtocolError(f"bad reply magic {magic:#010x}")
        if not self.structured:
            raise NbdProtocolError("structured reply chunk without structured replies negotiated")
        req = self._lookup(cookie)
        if flags & ~REPLY_FLAG_DONE:
            flags &= REPLY_FLAG_DONE  # unknown chunk flags are reserved: ignore them
        if kind == REPLY_TYPE_NONE:
            if length or not flags & REPLY_FLAG_DONE:
                raise NbdProtocolError("NONE chunk with a payload or without DONE")
        elif kind == REPLY_TYPE_OFFSET_DATA:
            if req.cmd != CMD_READ:
                raise NbdProtocolError(f"OFFSET_DATA chunk for {CMD_NAMES.get(req.cmd)}")
            if length <= 8 or length - 8 > req.length:
                raise NbdProtocolError(f"OFFSET_DATA chunk of {length} bytes for a {req.length}-byte read")
        elif kind == REPLY_TYPE_OFFSET_HOLE:
            if req.cmd != CMD_READ:
                raise NbdProtocolError(f"OFFSET_HOLE chunk for {CMD_NAMES.get(req.cmd)}")
            if length != 12:
                raise NbdProtocolError(f"OFFSET_HOLE chunk of {length} bytes")
        elif kind == REPLY_TYPE_BLOCK_STATUS:
            if req.cmd != CMD_BLOCK_STATUS:
                raise NbdProtocolError(f"BLOCK_STATUS chunk for {CMD_NAMES.get(req.cmd)}")
            if length < 12 or (length - 4) % 8 or length > _BLOCK_STATUS_MAX:
                raise NbdProtocolError(f"BLOCK_STATUS chunk of {length} bytes")
        elif kind & (1 << 15):
            if length < 6 or length > 6 + MAX_STRING + 8:
                raise NbdProtocolError(f"error chunk of {length} bytes")
        else:
            raise NbdProtocolError(f"unknown chunk type {kind}")
        return Chunk(req, flags, kind, length)

    # -- payloads -------------------------------------------------------------------------
    def data_target(self, chunk: Chunk, offset_bytes) -> tuple[int, int]:
        """OFFSET_DATA: the 8-byte offset -> (start within the request, byte count)."""
        (offset,) = _U64.unpack_from(offset_bytes)
        return self._place(chunk.request, offset, chunk.length - 8, "OFFSET_DATA")

    def hole(self, chunk: Chunk, payload) -> tuple[int, int]:
        offset, count = _HOLE.unpack_from(payload)
        if count == 0:
            raise NbdProtocolError("OFFSET_HOLE of size 0")
        return self._place(chunk.request, offset, count, "OFFSET_HOLE")

    def _place(self, req: Request, offset: int, count: int, what: str) -> tuple[int, int]:
        start = offset - req.offset
        if start < 0 or start + count > req.length:
            raise NbdProtocolError(
                f"{what} {offset}+{count} outside the request {req.offset}+{req.length}")
        req.cover(start, count)
        return start, count

    def block_status(self, chunk: Chunk, payload) -> tuple[int, list[tuple[int, int]]]:
        req = chunk.request
        (cid,) = _U32.unpack_from(payload)
        if cid not in self.contexts:
            raise NbdProtocolError(f"block status for meta context {cid}, which was not negotiated")
        if cid in req.extents:
            raise NbdProtocolError(f"two block status chunks for context {cid}")
        n = (len(payload) - 4) // 8
        raw = struct.unpack_from(f">{2 * n}I", payload, 4)
        extents = list(zip(raw[0::2], raw[1::2]))
        if req.flags & CMD_FLAG_REQ_ONE and n != 1:
            raise NbdProtocolError(f"{n} extents despite REQ_ONE")
        pos = 0
        for i, (length, _flags) in enumerate(extents):
            if length == 0:
                raise NbdProtocolError("zero-length extent")
            if pos >= req.length:
                raise NbdProtocolError("extents run past the request")
            pos += length
            if req.flags & CMD_FLAG_REQ_ONE and pos > req.length:
                raise NbdProtocolError("REQ_ONE extent runs past the request")
        if self.export_size is not None and req.offset + pos > self.export_size:
            raise NbdProtocolError(
                f"block status extents end at {req.offset + pos}, past the end of the {self.export_size}-byte "
                "export (descriptors represent consecutive portions of the export)")
        req.extents[cid] = extents
        return cid, extents

    def error(self, chunk: Chunk, payload) -> tuple[int, str, int | None]:
        error, msglen = _ERROR_HEAD.unpack_from(payload)
        if error == 0:
            raise NbdProtocolError("error chunk with error value 0")
        tail = 8 if chunk.type == REPLY_TYPE_ERROR_OFFSET else 0
        if 6 + msglen + tail > len(payload) or (chunk.type in (REPLY_TYPE_ERROR, REPLY_TYPE_ERROR_OFFSET)
                                                and 6 + msglen + tail != len(payload)):
            raise NbdProtocolError("error chunk message length does not match the chunk")
        message = bytes(payload[6:6 + msglen]).decode("utf-8", "replace")
        offset = None
        if chunk.type == REPLY_TYPE_ERROR_OFFSET:
            (offset,) = _U64.unpack_from(payload, 6 + msglen)
        req = chunk.request
        if chunk.type not in (REPLY_TYPE_ERROR, REPLY_TYPE_ERROR_OFFSET):
            error = 22  # unknown error chunk type: fail the request, keep the connection
        if not req.error:  # the first error wins
            req.error = known_errno(error)
            req.message = message
        return req.error, message, offset

    # -- one reply, whatever carries the bytes -----------------------------------------------------
    def read_reply(self, io) -> Request | None:
        """Read one simple reply or one chunk through `io`; the request it completed, if any.

        The one reply loop of the client and of ReplyParser. `io` moves the bytes:
            take(n) -> n bytes (a header; valid until the next call)
            read_bytes(n) -> n bytes (a payload this module parses)
            read_data(req, start, n): the next n bytes are READ data for [start, start+n) of req
            read_hole(req, start, n): [start, start+n) of req reads as zeros
            extents(req, context_id, extents), failed(req, errno, message, offset): what a
                BLOCK_STATUS or error chunk said (the tracker has recorded it in req already)
        """
        prefix = io.take(REPLY_PREFIX_SIZE)
        if self.reply_kind(prefix) == SIMPLE_REPLY_MAGIC:
            req, n = self.simple_reply(prefix)
            if n:
                io.read_data(req, 0, n)
            self.finish(req)
            return req
        chunk = self.chunk(bytes(prefix) + bytes(io.take(CHUNK_SIZE - REPLY_PREFIX_SIZE)))
        kind = chunk.type
        req = chunk.request
        if kind == REPLY_TYPE_OFFSET_DATA:
            start, n = self.data_target(chunk, io.take(8))
            io.read_data(req, start, n)
        elif kind == REPLY_TYPE_OFFSET_HOLE:
            start, n = self.hole(chunk, io.take(12))
            io.read_hole(req, start, n)
        elif kind == REPLY_TYPE_BLOCK_STATUS:
            cid, extents = self.block_status(chunk, io.read_bytes(chunk.length))
            io.extents(req, cid, extents)
        elif kind & (1 << 15):
            errno, message, offset = self.error(chunk, io.read_bytes(chunk.length))
            io.failed(req, errno, message, offset)
        if self.end_chunk(chunk):
            return req
        return None

    def reply_size(self, buf) -> int | None:
        """Bytes the reply at the start of buf takes, headers checked; None until its header is in."""
        if len(buf) < REPLY_PREFIX_SIZE:
            return None
        if self.reply_kind(buf) == SIMPLE_REPLY_MAGIC:
            _, error, cookie = SIMPLE_REPLY.unpack_from(buf)
            req = self._lookup(cookie)
            data = req.cmd == CMD_READ and not error and not self.structured
            return REPLY_PREFIX_SIZE + (req.length if data else 0)
        if len(buf) < CHUNK_SIZE:
            return None
        return CHUNK_SIZE + self.chunk(bytes(buf[:CHUNK_SIZE])).length

    def end_chunk(self, chunk: Chunk) -> bool:
        """After a chunk's payload: True (and the request retired) if it was the last."""
        if chunk.done:
            self.finish(chunk.request)
            return True
        return False

    def finish(self, req: Request) -> None:
        if not req.error:
            if req.cmd == CMD_READ and req.seen != req.length:
                raise NbdProtocolError(
                    f"READ {req.offset}+{req.length} answered with {req.seen} bytes")
            if req.cmd == CMD_BLOCK_STATUS and not req.extents:
                raise NbdProtocolError("BLOCK_STATUS answered without extents")
        del self.pending[req.cookie]
        req.done = True


# =============================================================================
# h11-style event parser over the tracker (tests, fuzzing, simple transports)
# =============================================================================

# Offsets are absolute export offsets. Being tuples, events of different kinds with equal fields would
# compare equal, but no two kinds can have equal fields: their arity or field types differ.
ReadData = namedtuple("ReadData", "cookie offset data")
ReadHole = namedtuple("ReadHole", "cookie offset length")
BlockStatusEvent = namedtuple("BlockStatusEvent", "cookie context_id extents", defaults=((),))
CommandFailed = namedtuple("CommandFailed", "cookie errno message offset", defaults=("", None))


class Done(namedtuple("Done", "cookie error", defaults=(0,))):
    """The request is complete; its error (0 for success) is final."""
    __slots__ = ()


class _BufferedReply:
    """The io of ReplyTracker.read_reply over one whole reply in memory, turning it into events."""

    __slots__ = ("view", "pos", "events")

    def __init__(self, data: bytes):
        self.view = memoryview(data)
        self.pos = 0
        self.events: list = []

    def take(self, n: int):
        v = self.view[self.pos:self.pos + n]
        self.pos += n
        return v

    def read_bytes(self, n: int) -> bytes:
        return bytes(self.take(n))

    def read_data(self, req: Request, start: int, n: int) -> None:
        self.events.append(ReadData(req.cookie, req.offset + start, self.read_bytes(n)))

    def read_hole(self, req: Request, start: int, n: int) -> None:
        self.events.append(ReadHole(req.cookie, req.offset + start, n))

    def extents(self, req: Request, context_id: int, extents) -> None:
        self.events.append(BlockStatusEvent(req.cookie, context_id, extents))

    def failed(self, req: Request, errno: int, message: str, offset) -> None:
        self.events.append(CommandFailed(req.cookie, errno, message, offset))


class ReplyParser:
    """Feed bytes from the server, get events back. No sockets, no blocking."""

    def __init__(self, tracker: ReplyTracker):
        self.tracker = tracker
        self._buf = bytearray()
        self.dead = False

    def send(self, req: Request) -> bytes:
        """Register a request; returns its wire header (WRITE data goes after it)."""
        self.tracker.add(req)
        return encode_request(req.cmd, req.cookie, req.offset, req.length, req.flags)

    def feed(self, data: bytes) -> list:
        """Add bytes; return every event they complete. NbdProtocolError is fatal."""
        if self.dead:
            raise NbdProtocolError("connection already failed")
        self._buf += data
        out = []
        try:
            while True:
                size = self.tracker.reply_size(self._buf)
                if size is None or len(self._buf) < size:
                    return out
                io = _BufferedReply(bytes(self._buf[:size]))
                del self._buf[:size]
                req = self.tracker.read_reply(io)
                out += io.events
                if req is not None:
                    out.append(Done(req.cookie, req.error))
        except NbdProtocolError:
            self.dead = True
            raise
