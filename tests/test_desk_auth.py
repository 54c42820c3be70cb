"""Desk console users and sessions: salted argon2 hashes, sessions that expire, no plain passwords in config."""

from __future__ import annotations

import pytest

from service.config import ConfigError, parse_config
from service.desk.auth import Sessions, Users, hash_password


def test_passwords_are_checked_against_salted_argon2_hashes():
    h1, h2 = hash_password("correct horse"), hash_password("correct horse")
    assert h1.startswith("$argon2id$") and h1 != h2  # salted: the same password hashes differently
    users = Users({"wang": h1})
    assert users.verify("wang", "correct horse")
    assert not users.verify("wang", "correct horse ") and not users.verify("li", "correct horse")
    assert not Users({"wang": "not-a-hash"}).verify("wang", "not-a-hash")


def test_sessions_expire():
    now = [1000.0]
    sessions = Sessions(ttl_s=60, clock=lambda: now[0])
    token, s = sessions.create("wang")
    assert sessions.get(token) == s and len(s.csrf) >= 24
    now[0] += 59
    assert sessions.get(token) is not None
    now[0] += 2
    assert sessions.get(token) is None and sessions.get(token) is None
    assert sessions.get("forged") is None and sessions.get(None) is None


def test_config_refuses_a_plain_password():
    with pytest.raises(ConfigError, match=r"desk\.users: .*argon2"):
        parse_config({"desk": {"users": {"wang": "hunter2"}}}, environ={})
    assert parse_config({"desk": {"users": {"wang": hash_password("x" * 12)}}}, environ={}).desk.users
