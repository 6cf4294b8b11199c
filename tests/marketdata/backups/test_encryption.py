"""The encrypted stream: it round-trips, and any change, cut, reordering or wrong key fails."""

import io
import os

import pytest

from marketdata.backups.encryption import (
    HEADER,
    TAG_SIZE,
    BackupError,
    EncryptingWriter,
    KeyMissing,
    Keys,
    Tampered,
    Truncated,
    WrongKey,
    decode_key,
    decrypt,
    generate_key,
    key_id,
)

CHUNK = 64
KEY = decode_key(generate_key(), "test")
OTHER_KEY = decode_key(generate_key(), "test")


def encrypt(plain: bytes, key: bytes = KEY, *, pieces: int = 7) -> bytes:
    target = io.BytesIO()
    writer = EncryptingWriter(target, key, CHUNK)
    step = max(1, len(plain) // pieces)
    for start in range(0, len(plain), step):
        writer.write(plain[start : start + step])
    writer.close()
    assert (writer.size, writer.plain_size) == (len(target.getvalue()), len(plain))
    return target.getvalue()


def decrypted(sealed: bytes, keys: Keys | None = None) -> bytes:
    return b"".join(decrypt(io.BytesIO(sealed), keys or Keys(KEY)))


@pytest.mark.parametrize("size", [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK, 5 * CHUNK + 17])
def test_what_is_written_is_what_is_read_back(size):
    plain = os.urandom(size)
    sealed = encrypt(plain)
    assert decrypted(sealed) == plain
    chunks = max(1, -(-size // CHUNK))
    assert len(sealed) == HEADER.size + size + chunks * TAG_SIZE


def test_the_same_data_encrypts_differently_every_time():
    plain = b"x" * 200
    assert encrypt(plain)[HEADER.size :] != encrypt(plain)[HEADER.size :]


def test_changing_any_single_byte_fails_authentication():
    sealed = encrypt(os.urandom(3 * CHUNK + 5))
    for position in range(len(sealed)):
        tampered = bytearray(sealed)
        tampered[position] ^= 0x01
        with pytest.raises(BackupError):
            decrypted(bytes(tampered))


def test_a_file_cut_at_any_length_fails():
    sealed = encrypt(os.urandom(3 * CHUNK + 5))
    for length in range(len(sealed)):
        with pytest.raises((Truncated, Tampered, BackupError)):
            decrypted(sealed[:length])


def test_a_file_cut_at_a_chunk_boundary_is_named_truncated():
    sealed = encrypt(os.urandom(3 * CHUNK + 5))
    boundary = HEADER.size + 2 * (CHUNK + TAG_SIZE)
    with pytest.raises(Truncated, match="not its last chunk"):
        decrypted(sealed[:boundary])


def test_swapped_or_repeated_chunks_fail():
    sealed = encrypt(os.urandom(3 * CHUNK + 5))
    size = CHUNK + TAG_SIZE
    head, first, second = (
        sealed[: HEADER.size],
        sealed[HEADER.size : HEADER.size + size],
        sealed[HEADER.size + size : HEADER.size + 2 * size],
    )
    rest = sealed[HEADER.size + 2 * size :]
    with pytest.raises(Tampered):
        decrypted(head + second + first + rest)
    with pytest.raises(Tampered):
        decrypted(head + first + first + rest)


def test_a_chunk_from_another_file_with_the_same_key_fails():
    one, two = encrypt(os.urandom(2 * CHUNK + 1)), encrypt(os.urandom(2 * CHUNK + 1))
    spliced = one[: HEADER.size] + two[HEADER.size :]
    with pytest.raises(Tampered):
        decrypted(spliced)


def test_the_wrong_key_is_named_with_the_key_the_file_needs():
    sealed = encrypt(b"secret market data" * 10)
    with pytest.raises(WrongKey, match=key_id(KEY)):
        decrypted(sealed, Keys(OTHER_KEY))


def test_without_any_key_it_says_which_variable_to_set():
    with pytest.raises(KeyMissing, match="BACKUP_ENCRYPTION_KEY is not set"):
        decrypted(encrypt(b"data"), Keys(None))
    with pytest.raises(KeyMissing, match="--generate-key"):
        Keys(None).for_writing()


def test_an_old_key_still_decrypts_after_the_key_is_rotated():
    sealed = encrypt(b"made with the old key", KEY)
    assert decrypted(sealed, Keys(OTHER_KEY, (KEY,))) == b"made with the old key"


def test_keys_come_from_the_environment_and_bad_ones_name_their_variable():
    old = generate_key()
    keys = Keys.from_environment({"BACKUP_ENCRYPTION_KEY": generate_key(), "BACKUP_OLD_KEYS": old})
    assert keys.old == (decode_key(old, "x"),)
    with pytest.raises(BackupError, match="BACKUP_OLD_KEYS is not a backup key"):
        Keys.from_environment({"BACKUP_OLD_KEYS": "c2hvcnQ="})
    with pytest.raises(BackupError, match="BACKUP_ENCRYPTION_KEY is not a backup key"):
        Keys.from_environment({"BACKUP_ENCRYPTION_KEY": "not base64 at all!"})


def test_the_key_appears_nowhere_in_the_file():
    key_text = generate_key()
    key = decode_key(key_text, "test")
    sealed = encrypt(b"\x00" * 1000, key)
    assert key not in sealed
    assert key_text.encode() not in sealed


def test_a_file_of_another_kind_is_refused_as_such():
    with pytest.raises(BackupError, match="not a TCP Dashboard backup"):
        decrypted(b"PGDMP" + os.urandom(200))
