"""Repository encryption: a random master key wrapped by a passphrase (scrypt), AES-256-GCM envelopes.

Encrypted vaults also use a keyed BLAKE3 for chunk ids, so an id reveals nothing about the
content. Every sealed object is bound to its name through the associated data, so a chunk or
manifest swapped for another fails authentication instead of restoring the wrong bytes.
"""

from __future__ import annotations

import base64
import hmac
import os
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from core.base.errors import IntegrityError, UserError

NONCE_BYTES = 12
SCRYPT_N = 1 << 15
SCRYPT_R = 8
SCRYPT_P = 1
SCRYPT_MAX_MEMORY = 256 << 20  # 8x what blockvault itself asks for
_PROCESS_SALT = os.urandom(32)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text.encode("ascii"), validate=True)


@dataclass(frozen=True)
class Keys:
    """The vault's secrets: `data_key` seals objects, `id_key` keys the chunk-id hash."""

    data_key: bytes
    id_key: bytes

    def seal(self, plaintext: bytes, *, aad: bytes) -> bytes:
        """nonce || AES-256-GCM(plaintext), authenticated together with `aad`."""
        nonce = os.urandom(NONCE_BYTES)
        return nonce + AESGCM(self.data_key).encrypt(nonce, plaintext, aad)

    def open(self, sealed: bytes, *, aad: bytes, what: str) -> bytes:
        """Decrypt and authenticate; IntegrityError names `what` on any mismatch."""
        if len(sealed) < NONCE_BYTES + 16:
            raise IntegrityError(f"{what} is truncated")
        try:
            return AESGCM(self.data_key).decrypt(sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], aad)
        except InvalidTag:
            raise IntegrityError(f"{what} failed authentication (damaged or swapped)") from None


def _kek(passphrase: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return Scrypt(salt=salt, length=32, n=n, r=r, p=p).derive(passphrase.encode("utf-8"))


def new_keys(passphrase: str) -> tuple[Keys, dict]:
    """Fresh random keys and the config entry that wraps them under the passphrase."""
    if not passphrase:
        raise UserError("an empty passphrase cannot protect a vault")
    master = os.urandom(64)
    salt = os.urandom(16)
    kek = _kek(passphrase, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)
    nonce = os.urandom(NONCE_BYTES)
    wrapped = nonce + AESGCM(kek).encrypt(nonce, master, b"blockvault-master-key")
    entry = {
        "cipher": "aes-256-gcm",
        "kdf": "scrypt",
        "n": SCRYPT_N,
        "r": SCRYPT_R,
        "p": SCRYPT_P,
        "salt": _b64(salt),
        "wrapped_key": _b64(wrapped),
    }
    return Keys(master[:32], master[32:]), entry


def unwrap_keys(entry: dict, passphrase: str, *, vault: str) -> Keys:
    """The vault's keys from its config entry; a wrong passphrase is a user error."""
    try:
        salt = _unb64(entry["salt"])
        wrapped = _unb64(entry["wrapped_key"])
        n, r, p = int(entry["n"]), int(entry["r"]), int(entry["p"])
    except (KeyError, ValueError, TypeError, AttributeError, OverflowError):
        raise IntegrityError(f"vault {vault}: its key entry is damaged") from None
    if not (2 <= n <= 1 << 20 and 1 <= r <= 32 and 1 <= p <= 4) or n & (n - 1):
        raise IntegrityError(f"vault {vault}: its key entry has unsafe parameters")
    if 128 * n * r * p > SCRYPT_MAX_MEMORY:  # what a hostile vault may make us spend
        raise IntegrityError(
            f"vault {vault}: its key derivation asks for more than "
            f"{SCRYPT_MAX_MEMORY >> 20} MiB of memory; refusing"
        )
    kek = _kek(passphrase, salt, n, r, p)
    try:
        master = AESGCM(kek).decrypt(
            wrapped[:NONCE_BYTES], wrapped[NONCE_BYTES:], b"blockvault-master-key"
        )
    except (InvalidTag, ValueError):
        raise UserError(f"wrong passphrase for vault {vault}") from None
    return Keys(master[:32], master[32:])


def fingerprint(passphrase: str) -> bytes:
    """A per-process keyed digest of a passphrase, to compare without keeping it around."""
    return hmac.digest(_PROCESS_SALT, passphrase.encode("utf-8"), "sha256")
