"""Keyed pseudonyms (HMAC-SHA256) computed with Spark's own functions.

A plain hash of an 11-digit mobile is reversible by brute force; an HMAC with a
secret key is not. HMAC(K, m) = H((K ^ opad) || H((K ^ ipad) || m)): the two
padded keys are constants, so the whole thing is two ``sha2`` calls on binary
columns, no Python UDF. Tokens are written with the letters a-p only, so no
token can ever look like a phone, ID or card number to a PII scanner.
"""
from __future__ import annotations

import hashlib
import logging
import os
import secrets
from pathlib import Path
from typing import Optional

from pyspark.sql import Column
from pyspark.sql import functions as F

from ..config import PROJECT_ROOT, PseudonymConfig

log = logging.getLogger(__name__)

DEMO_KEY_FILE = PROJECT_ROOT / "secrets" / "demo.key"
TOKEN_HEX_CHARS = 32  # 128 bits


class PseudonymKeyMissing(RuntimeError):
    pass


def load_key(cfg: PseudonymConfig) -> bytes:
    """The HMAC key: environment variable, else the key file named in conf or by KEQUN_PSEUDONYM_KEY_FILE."""
    value = os.environ.get(cfg.key_env)
    if value:
        return value.encode("utf-8")
    path: Optional[str] = os.environ.get("KEQUN_PSEUDONYM_KEY_FILE") or cfg.key_file
    if path:
        p = Path(path) if os.path.isabs(path) else PROJECT_ROOT / path
        if not p.exists():
            raise PseudonymKeyMissing(f"pseudonym key file {p} does not exist")
        return p.read_bytes().strip()
    if cfg.create_demo_key:
        if not DEMO_KEY_FILE.exists():
            DEMO_KEY_FILE.parent.mkdir(parents=True, exist_ok=True)
            DEMO_KEY_FILE.write_text(secrets.token_hex(32))
            os.chmod(DEMO_KEY_FILE, 0o600)
            log.warning("created a random DEMO pseudonym key at %s (git-ignored); never use it in production",
                        DEMO_KEY_FILE)
        return DEMO_KEY_FILE.read_bytes().strip()
    raise PseudonymKeyMissing(
        f"no pseudonym key: set {cfg.key_env} or KEQUN_PSEUDONYM_KEY_FILE, or pseudonym.key_file in conf/pipeline.yaml")


def _pads(key: bytes) -> tuple[bytes, bytes]:
    if len(key) > 64:
        key = hashlib.sha256(key).digest()
    key = key.ljust(64, b"\x00")
    return bytes(b ^ 0x36 for b in key), bytes(b ^ 0x5C for b in key)


def hmac_hex(key: bytes, message: Column) -> Column:
    ipad, opad = _pads(key)
    inner = F.unhex(F.sha2(F.concat(F.lit(bytearray(ipad)), F.encode(message, "UTF-8")), 256))
    return F.sha2(F.concat(F.lit(bytearray(opad)), inner), 256)


def token(key: bytes, pii_type: str, normal: Column) -> Column:
    """Token of a normalised value; the type is part of the message so a mobile never equals an id token."""
    digest = hmac_hex(key, F.concat(F.lit(pii_type + ":"), normal))
    letters = F.translate(F.substring(digest, 1, TOKEN_HEX_CHARS), "0123456789", "ghijklmnop")
    return F.when(normal.isNull() | (normal == ""), F.lit(None)).otherwise(letters)


def python_token(key: bytes, pii_type: str, normal: str) -> str:
    """The same token computed in Python (for tests and the vault export)."""
    import hmac

    digest = hmac.new(key, f"{pii_type}:{normal}".encode(), hashlib.sha256).hexdigest()
    return digest[:TOKEN_HEX_CHARS].translate(str.maketrans("0123456789", "ghijklmnop"))
