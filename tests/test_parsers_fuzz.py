"""Hypothesis fuzzing of every parser a hostile vault or a typo can reach (RELIABILITY C):
only typed errors, never a crash or a hang."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.base.config import Settings
from core.base.errors import BlockvaultError, IntegrityError, UserError
from core.base.units import parse_size, validate_name
from core.repo import crypto
from core.repo.manifest import Manifest
from core.repo.repository import Repository
from core.stores.local import LocalStore

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
ZERO_ID = "0" * 64


def good_manifest() -> dict:
    return {
        "format": "blockvault-manifest",
        "version": 1,
        "id": "backup-abc123",
        "kind": "backup",
        "name": "n",
        "created_at": "2026-11-25T10:00:00+00:00",
        "disk": {"name": "d"},
        "size": 10,
        "chunk_size": 4,
        "digest": "x",
        "parent": None,
        "stats": {},
        "chunks": [ZERO_ID, None, ZERO_ID],
    }


@FUZZ
@given(st.binary(max_size=512))
def test_manifest_parser_rejects_random_bytes_with_a_typed_error(data: bytes) -> None:
    with pytest.raises(IntegrityError):
        Manifest.from_bytes(data, expected_id="backup-abc123")


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=12,
)


@pytest.mark.slow
@FUZZ
@given(st.sampled_from(sorted(good_manifest())), json_values)
def test_manifest_parser_with_one_field_replaced(field: str, value: object) -> None:
    """A manifest with any one field changed parses to something consistent or is refused."""
    body = good_manifest()
    body[field] = value
    try:
        manifest = Manifest.from_bytes(json.dumps(body).encode(), expected_id="backup-abc123")
    except IntegrityError:
        return
    assert len(manifest.chunks) == -(-manifest.size // manifest.chunk_size)
    assert all(c is None or len(c) == 64 for c in manifest.chunks)


def test_a_manifest_naming_another_id_is_refused() -> None:
    """A replayed manifest (renamed to another backup's key) is detected."""
    with pytest.raises(IntegrityError, match="names itself"):
        Manifest.from_bytes(json.dumps(good_manifest()).encode(), expected_id="backup-other1")


@FUZZ
@given(st.text(max_size=16))
def test_size_parser_only_raises_user_errors(text: str) -> None:
    try:
        size = parse_size(text)
    except UserError:
        return
    assert isinstance(size, int) and size > 0


@FUZZ
@given(st.text(max_size=40))
def test_name_validation_only_raises_user_errors(text: str) -> None:
    with contextlib.suppress(UserError):
        assert validate_name(text, kind="disk") == text


@FUZZ
@given(st.text(max_size=200))
def test_config_file_parser_only_raises_user_errors(
    tmp_path_factory: pytest.TempPathFactory, text: str
) -> None:
    path = tmp_path_factory.mktemp("cfg") / "config.toml"
    path.write_text(text)
    with contextlib.suppress(UserError):
        Settings.load(path)


@pytest.mark.slow
@FUZZ
@given(st.binary(max_size=300))
def test_vault_config_parser_gives_typed_errors(
    tmp_path_factory: pytest.TempPathFactory, data: bytes
) -> None:
    store = LocalStore(tmp_path_factory.mktemp("vault"))
    store.put("config", data)
    with contextlib.suppress(BlockvaultError):
        Repository.open(store, passphrase="pw")


@pytest.mark.slow
@FUZZ
@given(st.dictionaries(st.sampled_from(["salt", "wrapped_key", "n", "r", "p"]), json_values))
def test_key_entry_parser_gives_typed_errors(entry: dict) -> None:
    """A hostile key entry can't make scrypt run for hours or crash: typed errors only."""
    with contextlib.suppress(BlockvaultError):
        crypto.unwrap_keys(entry, "pw", vault="v")


@FUZZ
@given(st.binary(max_size=300))
def test_chunk_decoder_never_returns_unverified_bytes(data: bytes) -> None:
    vault = Repository(LocalStore(Path("/nonexistent-unused")), {"chunk_size": 4096}, None)
    with pytest.raises(IntegrityError):
        vault.decode_chunk(ZERO_ID, data)
