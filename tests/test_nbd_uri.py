"""NBD URIs as in doc/uri.md, plus the host:port shorthand."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nbdboot.nbd.uri import DEFAULT_PORT, NbdUri, UriError, parse_uri


@pytest.mark.parametrize("text, expect", [
    ("nbd://h/disk", NbdUri(host="h", export="disk")),
    ("nbd://h", NbdUri(host="h", export="")),
    ("nbd://h/", NbdUri(host="h", export="")),
    ("nbd://h//disk", NbdUri(host="h", export="/disk")),
    ("nbd://h/hello%20world", NbdUri(host="h", export="hello world")),
    ("nbd://h:1234/x", NbdUri(host="h", port=1234, export="x")),
    ("nbd://[::1]:1234/x", NbdUri(host="::1", port=1234, export="x")),
    ("nbd://[fe80::1]/", NbdUri(host="fe80::1")),
    ("nbds://h/x", NbdUri(host="h", export="x", tls=True)),
    ("nbd+unix:///x?socket=/tmp/s.sock", NbdUri(socket="/tmp/s.sock", export="x")),
    ("nbds+unix:///?socket=/tmp/s", NbdUri(socket="/tmp/s", tls=True)),
    ("nbd+unix:///?socket=%00/abstract", NbdUri(socket="\0/abstract")),
    ("nbds://h/x?tls-certificates=/pki&tls-verify-peer=0&tls-hostname=srv",
     NbdUri(host="h", export="x", tls=True, tls_certificates="/pki", tls_verify_peer=False, tls_hostname="srv")),
    ("nbd://h/?x-custom=1", NbdUri(host="h")),
    ("localhost:10810", NbdUri(host="localhost", port=10810)),
    ("[::1]:99", NbdUri(host="::1", port=99)),
    ("server", NbdUri(host="server", port=DEFAULT_PORT)),
    ("127.0.0.1", NbdUri(host="127.0.0.1")),
])
def test_parse(text, expect):
    assert parse_uri(text) == expect


@pytest.mark.parametrize("text", [
    "", "http://h/x", "nbd+unix:///x", "nbd+unix://host/x?socket=/s", "nbd://h/?socket=/s",
    "nbd://h:99999/", "nbd://h:port/", "nbd://[::1/", "nbd://h/?bogus=1", "nbd://h/?tls-type=psk",
    "nbd://h/?socket=a&socket=b", "h:0", "a:b:c",
])
def test_reject(text):
    with pytest.raises(UriError):
        parse_uri(text)


def test_uri_error_is_a_usage_error():
    with pytest.raises(UriError) as e:
        parse_uri("ftp://x")
    assert e.value.exit_code == 2


_chars = st.characters(blacklist_categories=("Cs",), blacklist_characters="\0")  # encodable, no NUL


@given(st.text(_chars, max_size=40), st.integers(1, 65535), st.booleans())
def test_str_round_trip(export, port, tls):
    u = NbdUri(host="example.org", port=port, export=export, tls=tls)
    assert parse_uri(str(u)) == u


@given(st.text(_chars, min_size=1, max_size=40), st.text(_chars, max_size=20))
def test_unix_round_trip(path, export):
    u = NbdUri(socket="/" + path, export=export)
    assert parse_uri(str(u)) == u
