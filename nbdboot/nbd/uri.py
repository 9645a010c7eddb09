"""NBD URIs (NetworkBlockDevice doc/uri.md) and the `host:port` shorthand.

    nbd://HOST[:PORT]/EXPORT        nbds://...            TLS required
    nbd+unix:///EXPORT?socket=PATH  nbds+unix:///EXPORT?socket=PATH
    HOST:PORT, [V6ADDR]:PORT, HOST  plain TCP, default export

Export names are the path minus its leading "/", percent-decoded. Query
parameters: socket, tls-type, tls-hostname, tls-verify-peer, and libnbd's
tls-certificates (a directory of ca-cert.pem/client-cert.pem/client-key.pem).
Unknown parameters are refused unless they start with "x-".
"""

from __future__ import annotations

import re
from collections import namedtuple
from urllib.parse import quote, unquote

from nbdboot.errors import UsageError

DEFAULT_PORT = 10809

_SCHEMES = {"nbd": (False, False), "nbds": (True, False), "nbd+unix": (False, True),
            "nbds+unix": (True, True), "nbd+tcp": (False, False)}
_KNOWN_PARAMS = {"socket", "tls-type", "tls-hostname", "tls-verify-peer", "tls-certificates"}


class UriError(UsageError):
    pass


# host: TCP host (no brackets), "" for unix sockets; socket: unix socket path; tls: nbds, TLS required.
class NbdUri(namedtuple("NbdUri", "host port socket export tls tls_hostname tls_verify_peer "
                                  "tls_certificates user",
                        defaults=("", DEFAULT_PORT, None, "", False, None, True, None, None))):
    __slots__ = ()

    @property
    def is_unix(self) -> bool:
        return self.socket is not None

    def with_export(self, export: str) -> "NbdUri":
        return self._replace(export=export)

    def __str__(self) -> str:
        scheme = ("nbds" if self.tls else "nbd") + ("+unix" if self.is_unix else "")
        path = "/" + quote(self.export, safe="/")
        query = []
        if self.is_unix:
            query.append("socket=" + quote(self.socket, safe="/"))
            authority = ""
        else:
            host = f"[{self.host}]" if ":" in self.host else self.host
            authority = host + ("" if self.port == DEFAULT_PORT else f":{self.port}")
        if self.tls_certificates:
            query.append("tls-certificates=" + quote(self.tls_certificates, safe="/"))
        if self.tls_hostname:
            query.append("tls-hostname=" + quote(self.tls_hostname))
        if not self.tls_verify_peer:
            query.append("tls-verify-peer=0")
        return f"{scheme}://{authority}{path}" + ("?" + "&".join(query) if query else "")


_URI = re.compile(r"^(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*)://(?P<authority>[^/?#]*)(?P<path>[^?#]*)"
                  r"(?:\?(?P<query>[^#]*))?(?:#.*)?$")
_HOSTPORT = re.compile(r"^(?:\[(?P<v6>[0-9A-Fa-f:.%a-zA-Z]+)\]|(?P<host>[^:/\[\]]+))(?::(?P<port>\d+))?$")


def looks_like_uri(text: str) -> bool:
    return bool(re.match(r"^nbds?(\+unix|\+tcp)?://", text))


def _port(text: str, original: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise UriError(f"bad port {text!r} in {original!r}")
    return int(text)


def _split_host(authority: str, original: str) -> tuple[str, int]:
    if not authority:
        return "localhost", DEFAULT_PORT
    if authority.startswith("["):
        end = authority.find("]")
        if end < 0:
            raise UriError(f"unclosed IPv6 bracket in {original!r}")
        host, rest = authority[1:end], authority[end + 1:]
        if rest and not rest.startswith(":"):
            raise UriError(f"junk after IPv6 address in {original!r}")
        return unquote(host), _port(rest[1:], original) if rest else DEFAULT_PORT
    host, sep, port = authority.rpartition(":")
    if not sep:
        return unquote(authority), DEFAULT_PORT
    if ":" in host:
        raise UriError(f"IPv6 address must be in brackets in {original!r}")
    return unquote(host) or "localhost", _port(port, original) if port else DEFAULT_PORT


def parse_uri(text: str) -> NbdUri:
    """An NBD URI, `host:port`, `[v6]:port` or bare `host` -> NbdUri; UriError if malformed."""
    if not isinstance(text, str) or not text:
        raise UriError("empty NBD address")
    m = _URI.match(text)
    if not m:
        hm = _HOSTPORT.match(text)
        if not hm:
            raise UriError(f"not an NBD URI or host:port: {text!r}")
        host = hm.group("v6") or hm.group("host")
        port = _port(hm.group("port"), text) if hm.group("port") else DEFAULT_PORT
        return NbdUri(host=host, port=port)
    scheme = m.group("scheme").lower()
    if scheme not in _SCHEMES:
        raise UriError(f"unsupported URI scheme {scheme!r} in {text!r}")
    tls, unix = _SCHEMES[scheme]
    authority, path, query = m.group("authority"), m.group("path"), m.group("query") or ""
    user = None
    if "@" in authority:
        user, authority = authority.rsplit("@", 1)
        user = unquote(user)
    export = unquote(path[1:]) if path.startswith("/") else unquote(path)
    params: dict[str, str] = {}
    for part in re.split(r"[&;]", query) if query else []:
        if not part:
            continue
        key, _, value = part.partition("=")
        key = unquote(key)
        if key in params:
            raise UriError(f"query parameter {key!r} given twice in {text!r}")
        if key not in _KNOWN_PARAMS and not key.startswith("x-"):
            raise UriError(f"unknown query parameter {key!r} in {text!r}")
        params[key] = unquote(value)
    sock = params.get("socket")
    if unix:
        if authority:
            raise UriError(f"a unix-socket URI has no host: {text!r}")
        if not sock:
            raise UriError(f"{scheme}:// needs ?socket=PATH: {text!r}")
        host, port = "", DEFAULT_PORT
    else:
        if sock is not None:
            raise UriError(f"socket= only goes with nbd+unix:// or nbds+unix://: {text!r}")
        host, port = _split_host(authority, text)
    tls_type = params.get("tls-type", "x509")
    if tls_type not in ("x509", "anon", "psk"):
        raise UriError(f"bad tls-type {tls_type!r}")
    if tls_type == "psk":
        raise UriError("tls-type=psk is not supported (Python's ssl module lacks TLS-PSK here)")
    verify = params.get("tls-verify-peer", "1")
    if verify not in ("0", "1", "true", "false"):
        raise UriError(f"bad tls-verify-peer {verify!r}")
    return NbdUri(host=host, port=port, socket=sock if unix else None, export=export, tls=tls,
                  tls_hostname=params.get("tls-hostname"), tls_verify_peer=verify in ("1", "true"),
                  tls_certificates=params.get("tls-certificates"), user=user)
