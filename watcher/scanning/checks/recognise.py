"""What a file is by its content, whatever it is called: the sensitive-file rules that a name alone
would miss (`config.bak` that is a kubeconfig, `store.dat` that is a JKS keystore).

Binary formats by their magic numbers or structure — JKS (`FEEDFEED`), JCEKS (`CECECECE`), PKCS#12
(no magic bytes: a DER SEQUENCE holding version 3 and a PKCS#7 ContentInfo); text formats by their
shape in the first `_TEXT_WINDOW` bytes — kubeconfig, a JSON Web Key with its private part, a PuTTY
private key, `.npmrc` and `.pypirc` lines. Each answer names the `sensitive.toml` rule it stands for.
(PEM and OpenSSH private keys anywhere in text are the secret rules' `private-key`.)
"""

from __future__ import annotations

import re

_TEXT_WINDOW = 256 * 1024

_PKCS7_DATA = bytes.fromhex("06092a864886f70d010701")  # OID 1.2.840.113549.1.7.1
_PKCS7_SIGNED = bytes.fromhex("06092a864886f70d010702")  # 1.2.840.113549.1.7.2

_KUBECONFIG = (
    re.compile(rb"(?m)^clusters:[ \t]*\r?$"),
    re.compile(rb"(?m)^users:[ \t]*\r?$"),
    re.compile(rb"(?m)^\s+(client-key-data|token|password):[ \t]*\S"),
)
_JWK_TYPE = re.compile(rb'"kty"\s*:\s*"(RSA|EC|OKP|oct)"')
_JWK_PRIVATE = re.compile(rb'"(d|k)"\s*:\s*"[A-Za-z0-9_-]{16,}"')
_PUTTY = re.compile(rb"(?m)^PuTTY-User-Key-File-[23]:\s*\S+")
_PUTTY_PRIVATE = re.compile(rb"(?m)^Private-Lines:\s*\d+")
_NPMRC = re.compile(rb"(?m)^\s*//[^\s=]+/:(_authToken|_auth|_password|username)\s*=")
_PYPIRC_SECTION = re.compile(rb"(?m)^\[(distutils|pypi|testpypi)\]\s*$")
_PYPIRC_FIELD = re.compile(rb"(?m)^\s*(username|password|repository)\s*[=:]")


def recognise(data: bytes | bytearray) -> str | None:
    """The id of the sensitive-file rule whose kind of file `data` is, or None."""
    head = bytes(data[:_TEXT_WINDOW])
    if head[:4] in (b"\xfe\xed\xfe\xed", b"\xce\xce\xce\xce"):
        return "keystore-file"  # JKS, JCEKS
    if _is_pkcs12(head):
        return "keystore-file"
    if b"\x00" in head[:1024]:
        return None  # other binaries: nothing below is binary
    # each shape's regexes run only where its literal is present: a multi-line `^…` pattern over
    # 256 KiB of minified code is slow, a `bytes.find` is not
    if b"PuTTY-User-Key-File-" in head and _PUTTY.search(head) and _PUTTY_PRIVATE.search(head):
        return "private-key-file"
    if (
        b"clusters:" in head
        and b"users:" in head
        and all(pattern.search(head) for pattern in _KUBECONFIG)
    ):
        return "kubeconfig"
    if b'"kty"' in head and _JWK_TYPE.search(head) and _JWK_PRIVATE.search(head):
        return "jwk-private-key"
    npmrc = b"/:_auth" in head or b"/:_password" in head or b"/:username" in head
    if npmrc and _NPMRC.search(head):
        return "npmrc-file"
    pypirc = b"pypi]" in head or b"[distutils]" in head
    if pypirc and _PYPIRC_SECTION.search(head) and _PYPIRC_FIELD.search(head):
        return "pypirc-file"
    return None


def _der_length(data: bytes, pos: int) -> tuple[int, int] | None:
    """(length, offset of the content) of the DER element whose length byte is at `pos`."""
    if pos >= len(data):
        return None
    first = data[pos]
    if first < 0x80:
        return first, pos + 1
    count = first & 0x7F
    if not 1 <= count <= 4 or pos + 1 + count > len(data):
        return None
    return int.from_bytes(data[pos + 1 : pos + 1 + count], "big"), pos + 1 + count


def _is_pkcs12(head: bytes) -> bool:
    """PFX ::= SEQUENCE { version INTEGER (3), authSafe ContentInfo, macData OPTIONAL }."""
    if head[:1] != b"\x30":
        return False
    outer = _der_length(head, 1)
    if outer is None or outer[0] < 16:
        return False
    pos = outer[1]
    if head[pos : pos + 3] != b"\x02\x01\x03":
        return False
    pos += 3
    if head[pos : pos + 1] != b"\x30":
        return False
    inner = _der_length(head, pos + 1)
    if inner is None:
        return False
    oid = head[inner[1] : inner[1] + len(_PKCS7_DATA)]
    return oid in (_PKCS7_DATA, _PKCS7_SIGNED)
