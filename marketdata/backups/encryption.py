"""The encrypted backup file: AES-256-GCM in chunks, written and read as a stream.

Layout: a 52-byte header, then chunks. Each chunk is up to `chunk_size` bytes of plain
text sealed with AES-256-GCM (its 16-byte tag appended); every chunk but the last is
full size.

    header = MAGIC (8) | key id (8) | salt (32) | chunk size (4, big-endian)
    file key = HKDF-SHA256(master key, salt, "tcp-dashboard backup v1 data")
    nonce of chunk i = i (11 bytes, big-endian) | 1 if it is the last chunk else 0
    associated data of every chunk = the header

This is the STREAM construction of online authenticated encryption (Hoang, Reyhanitabar,
Rogaway, Vizár, 2015) over AES-GCM from the `cryptography` package. Because the index and
the last-chunk flag are in the nonce, a reordered, dropped, repeated or tampered chunk, a
file cut at any byte, and a changed header all fail authentication. Every file gets its
own key from a random 32-byte salt, so counter nonces never repeat under one key however
many backups share a master key (a random nonce prefix per file under the master key
itself would have a birthday bound). The key id lets a reader pick the right key among
BACKUP_ENCRYPTION_KEY and BACKUP_OLD_KEYS and name the one a file needs; it is a hash of
the key and reveals nothing of it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

MAGIC = b"TCPBAK\x00\x01"
HEADER = struct.Struct(">8s8s32sI")
TAG_SIZE = 16
KEY_SIZE = 32
DEFAULT_CHUNK_SIZE = 1 << 20
MAX_CHUNK_SIZE = 64 << 20
KEY_ENV = "BACKUP_ENCRYPTION_KEY"
OLD_KEYS_ENV = "BACKUP_OLD_KEYS"


class BackupError(Exception):
    """A backup or restore that cannot go on; the message says why and what to do."""


class KeyMissing(BackupError):
    pass


class WrongKey(BackupError):
    pass


class Tampered(BackupError):
    pass


class Truncated(BackupError):
    pass


def generate_key() -> str:
    """A new random master key, as BACKUP_ENCRYPTION_KEY takes it (URL-safe base64)."""
    return base64.urlsafe_b64encode(os.urandom(KEY_SIZE)).decode()


def decode_key(text: str, name: str) -> bytes:
    try:
        key = base64.urlsafe_b64decode(text.strip().encode())
    except (binascii.Error, ValueError):
        key = b""
    if len(key) != KEY_SIZE:
        raise BackupError(
            f"{name} is not a backup key (32 bytes in URL-safe base64); make one with "
            "`manage.py backup_database --generate-key`"
        )
    return key


def key_id(key: bytes) -> str:
    return hashlib.sha256(b"tcp-dashboard backup key id\x00" + key).hexdigest()[:16]


@dataclass(frozen=True)
class Keys:
    """The master key that encrypts, and the older ones that still decrypt."""

    current: bytes | None
    old: tuple[bytes, ...] = ()

    @classmethod
    def from_environment(cls, environ=os.environ) -> Keys:
        """BACKUP_ENCRYPTION_KEY and BACKUP_OLD_KEYS (comma-separated), read from the
        environment only, so no key ever sits in settings, a file or a log."""
        current = environ.get(KEY_ENV, "").strip()
        old = [part for part in environ.get(OLD_KEYS_ENV, "").split(",") if part.strip()]
        return cls(
            decode_key(current, KEY_ENV) if current else None,
            tuple(decode_key(part, OLD_KEYS_ENV) for part in old),
        )

    def for_writing(self) -> bytes:
        if self.current is None:
            raise KeyMissing(
                f"{KEY_ENV} is not set: backups are always encrypted. Make a key with "
                "`manage.py backup_database --generate-key`, keep it safe away from the "
                "backups, and set it in the environment."
            )
        return self.current

    def for_reading(self, wanted_id: str) -> bytes:
        candidates = ([self.current] if self.current else []) + list(self.old)
        if not candidates:
            raise KeyMissing(
                f"{KEY_ENV} is not set: the backup is encrypted (with key {wanted_id}) and "
                f"cannot be read without it (or set the old key in {OLD_KEYS_ENV})"
            )
        for key in candidates:
            if hmac.compare_digest(key_id(key), wanted_id):
                return key
        known = ", ".join(key_id(key) for key in candidates)
        raise WrongKey(
            f"wrong key: this backup was encrypted with key {wanted_id}; {KEY_ENV} and "
            f"{OLD_KEYS_ENV} hold {known}. Set the key it was made with (an old one goes "
            f"in {OLD_KEYS_ENV})."
        )


def derive(master: bytes, salt: bytes, purpose: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=KEY_SIZE, salt=salt, info=purpose).derive(master)


def file_key(master: bytes, salt: bytes) -> bytes:
    return derive(master, salt, b"tcp-dashboard backup v1 data")


def manifest_key(master: bytes, salt: bytes) -> bytes:
    return derive(master, salt, b"tcp-dashboard backup v1 manifest")


def nonce(index: int, last: bool) -> bytes:
    return index.to_bytes(11, "big") + (b"\x01" if last else b"\x00")


@dataclass(frozen=True)
class Header:
    key_id: str
    salt: bytes
    chunk_size: int
    raw: bytes

    @classmethod
    def new(cls, master: bytes, chunk_size: int) -> Header:
        salt = os.urandom(32)
        raw = HEADER.pack(MAGIC, bytes.fromhex(key_id(master)), salt, chunk_size)
        return cls(key_id(master), salt, chunk_size, raw)

    @classmethod
    def read(cls, source: BinaryIO) -> Header:
        raw = source.read(HEADER.size)
        if len(raw) < HEADER.size:
            if raw and not MAGIC.startswith(raw[: len(MAGIC)]):
                raise BackupError("not a TCP Dashboard backup (unknown file header)")
            raise Truncated(f"truncated: the file ends inside its {HEADER.size}-byte header")
        magic, key, salt, chunk_size = HEADER.unpack(raw)
        if magic != MAGIC:
            raise BackupError("not a TCP Dashboard backup (unknown file header)")
        if not 0 < chunk_size <= MAX_CHUNK_SIZE:
            raise Tampered(f"tampered or corrupt: impossible chunk size {chunk_size}")
        return cls(key.hex(), salt, chunk_size, raw)


class EncryptingWriter:
    """Encrypts what is written to it onto `target`, one chunk at a time; `close()` seals
    the last chunk. `sha256` and `size` describe the bytes written to `target`."""

    def __init__(self, target: BinaryIO, master: bytes, chunk_size: int = DEFAULT_CHUNK_SIZE):
        self.target = target
        self.header = Header.new(master, chunk_size)
        self.aead = AESGCM(file_key(master, self.header.salt))
        self.mac_key = manifest_key(master, self.header.salt)
        self.chunk_size = chunk_size
        self.pending = bytearray()
        self.index = 0
        self.size = 0
        self.plain_size = 0
        self.hash = hashlib.sha256()
        self.closed = False
        self._emit(self.header.raw)

    def _emit(self, data: bytes) -> None:
        self.target.write(data)
        self.hash.update(data)
        self.size += len(data)

    def _seal(self, plain: bytes, last: bool) -> None:
        self._emit(self.aead.encrypt(nonce(self.index, last), plain, self.header.raw))
        self.index += 1

    def write(self, data: bytes) -> None:
        self.plain_size += len(data)
        self.pending += data
        # Keep at least one byte back: only close() knows which chunk is the last.
        while len(self.pending) > self.chunk_size:
            self._seal(bytes(self.pending[: self.chunk_size]), last=False)
            del self.pending[: self.chunk_size]

    def close(self) -> None:
        if not self.closed:
            self._seal(bytes(self.pending), last=True)
            self.pending = bytearray()
            self.closed = True

    @property
    def sha256(self) -> str:
        return self.hash.hexdigest()


def decrypt(source: BinaryIO, keys: Keys) -> Iterator[bytes]:
    """The plain text of an encrypted backup, chunk by chunk, each authenticated before it
    is given out. Raises WrongKey, KeyMissing, Tampered or Truncated."""
    header = Header.read(source)
    aead = AESGCM(file_key(keys.for_reading(header.key_id), header.salt))
    sealed_size = header.chunk_size + TAG_SIZE
    index = 0
    chunk = source.read(sealed_size)
    while True:
        following = source.read(sealed_size) if len(chunk) == sealed_size else b""
        last = not following
        if len(chunk) < TAG_SIZE:
            raise Truncated(f"truncated: the file ends inside chunk {index}")
        try:
            plain = aead.decrypt(nonce(index, last), chunk, header.raw)
        except InvalidTag:
            raise _why_not(aead, header, index, chunk, last) from None
        yield plain
        if last:
            return
        chunk = following
        index += 1


def _why_not(aead: AESGCM, header: Header, index: int, chunk: bytes, last: bool) -> BackupError:
    """A chunk failed authentication: a cut file ends in a sound chunk that is not the last."""
    if not last:
        return Tampered(f"tampered or corrupt: chunk {index} fails authentication")
    try:
        aead.decrypt(nonce(index, False), chunk, header.raw)
    except InvalidTag:
        return Tampered(
            f"tampered or corrupt: chunk {index}, the last, fails authentication (it was "
            "changed, or cut short)"
        )
    return Truncated(f"truncated: the file ends after chunk {index}, not its last chunk")


def manifest_mac(master: bytes, salt: bytes, payload: bytes) -> str:
    return hmac.new(manifest_key(master, salt), payload, hashlib.sha256).hexdigest()
