"""Login-failure handling of the desk console (等保三级) over plain HTTP: after N failed logins for a user
name, or from one address, further tries are refused with 429 and Retry-After — even with the right
password — then allowed again; each lockout is logged (without the password), counted in the metrics and
audited."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest
from argon2 import PasswordHasher
from loguru import logger
from prometheus_client import generate_latest

from alerts.config import AlertsConfig
from alerts.runtime import AlertsRuntime
from service.config import DeskConfig
from service.desk.limits import LoginLimiter
from service.desk.server import DeskServer
from service.metrics import Metrics

PASSWORD = "rain-desk-2026!"
WRONG = "guess-number-%d"


def test_limiter_counts_within_the_window_and_lifts_after_the_lockout():
    now = [0.0]
    lim = LoginLimiter(max_per_user=3, max_per_address=10, window_s=60, lockout_s=300, clock=lambda: now[0])

    def wrong(user: str, address: str):  # one attempt whose password turns out wrong
        assert lim.attempt(user, address) == (None, False)
        return lim.failed(user, address)

    assert wrong("wang", "a") is None
    now[0] = 61  # the first failure left the window
    assert wrong("wang", "a") is None and wrong("wang", "a") is None
    started = wrong("wang", "a")
    assert started is not None and (started.scope, started.key, started.retry_after) == ("user", "wang", "300")
    now[0] = 100
    held = lim.check("wang", "b")
    assert held is not None and held.retry_after == "261" and lim.check("li", "a") is None
    assert lim.attempt("wang", "b") == (held, False)
    now[0] = 362
    assert lim.check("wang", "a") is None
    wrong("wang", "a")
    assert lim.attempt("wang", "a") == (None, False)
    lim.succeeded("wang", "a")  # a right password starts the user's count again
    assert wrong("wang", "a") is None and wrong("wang", "a") is None
    # a burst: attempts counted as they begin, so the 4th is refused before any of them has failed
    assert [lim.attempt("zhao", "c")[0] is None for _ in range(3)] == [True, True, True]
    refused, began = lim.attempt("zhao", "c")
    assert refused is not None and began and refused.scope == "user"


@pytest.mark.asyncio
async def test_repeated_failed_logins_are_refused_with_429_then_allowed(tmp_path: Path):
    cheap = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)  # argon2id all the same, just faster
    cfg = DeskConfig(enabled=True, port=0, users={"wang": cheap.hash(PASSWORD), "li": cheap.hash(PASSWORD)},
                     login_max_failures=3, login_max_failures_per_address=5, login_window_s=60, login_lockout_s=30)
    alerts = AlertsRuntime(AlertsConfig(), lambda _id: None, db_path=tmp_path / "alerts.sqlite")
    metrics = Metrics()
    desk = DeskServer(cfg, alerts, dict, metrics=metrics)
    logged: list[str] = []
    sink = logger.add(logged.append, level="INFO", format="{message}")
    await desk.start()
    try:
        async with httpx.AsyncClient(base_url=desk.url, follow_redirects=False) as http:
            async def login(user: str, password: str) -> httpx.Response:
                return await http.post("/login", data={"user": user, "password": password})

            for i in range(2):
                assert (await login("wang", WRONG % i)).status_code == 401
            third = await login("wang", WRONG % 2)  # the Nth failure starts the lockout
            assert third.status_code == 429 and 1 <= int(third.headers["Retry-After"]) <= 30
            refused = await login("wang", PASSWORD)  # the right password does not get through while locked
            assert refused.status_code == 429 and "desk_session" not in refused.cookies
            assert "try again in" in refused.text and int(refused.headers["Retry-After"]) <= 30
            assert (await login("li", PASSWORD)).status_code == 303  # another user is not locked out

            # two more failures from this address (5 in all) lock the address for every user name
            assert (await login("zhao", WRONG % 3)).status_code == 401
            assert (await login("zhao", WRONG % 4)).status_code == 429
            assert (await login("li", PASSWORD)).status_code == 429

            # the lockout lifts after login_lockout_s (moved forward rather than waited for)
            for tracks in desk.limiter._tracks.values():
                for track in tracks.values():
                    track.locked_until = 0.0
            assert (await login("wang", PASSWORD)).status_code == 303
    finally:
        await desk.stop()
        logger.remove(sink)
        await asyncio.to_thread(alerts.store.close)

    text = generate_latest(metrics.registry).decode()
    assert 'urbansense_desk_logins_total{outcome="failed"} 5.0' in text
    assert 'urbansense_desk_logins_total{outcome="refused"} 2.0' in text
    assert 'urbansense_desk_logins_total{outcome="ok"} 2.0' in text
    assert 'urbansense_desk_lockouts_total{scope="user"} 1.0' in text
    assert 'urbansense_desk_lockouts_total{scope="address"} 1.0' in text

    locks = [line for line in logged if "refused for 30 s" in line]
    assert len(locks) == 2 and "3 failed logins for user 'wang' within 60 s" in locks[0]
    assert "5 failed logins for address '127.0.0.1'" in locks[1]
    assert not any("guess-number" in line or PASSWORD in line for line in logged)

    audit = AlertsRuntime(AlertsConfig(), lambda _id: None, db_path=tmp_path / "alerts.sqlite").store
    try:
        rows = list(reversed(audit.audit()))
    finally:
        audit.close()
    assert [(r["user"], r["action"]) for r in rows if r["action"] != "login_failed"] == [
        ("wang", "login_locked"), ("li", "login"), ("zhao", "login_locked"), ("wang", "login")]
    assert [r["target"] for r in rows if r["action"] == "login_locked"] == ["user wang", "address 127.0.0.1"]
    assert not any("guess-number" in str(r) for r in rows)


@pytest.mark.asyncio
async def test_behind_a_trusted_proxy_each_client_address_is_counted_on_its_own(tmp_path: Path):
    cheap = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    alerts = AlertsRuntime(AlertsConfig(), lambda _id: None, db_path=tmp_path / "alerts.sqlite")
    results = {}
    for trust in (True, False):
        cfg = DeskConfig(enabled=True, port=0, users={"wang": cheap.hash(PASSWORD)}, login_max_failures=50,
                         login_max_failures_per_address=2, trust_forwarded_for=trust)
        desk = DeskServer(cfg, alerts, dict)
        await desk.start()
        try:
            async with httpx.AsyncClient(base_url=desk.url, follow_redirects=False) as http:
                async def login(password: str, client: str) -> int:
                    # a client may send its own X-Forwarded-For; the proxy appends the address it saw
                    headers = {"X-Forwarded-For": f"203.0.113.9, {client}"}
                    r = await http.post("/login", data={"user": "wang", "password": password}, headers=headers)
                    return r.status_code

                codes = [await login(WRONG % i, "10.0.0.5") for i in range(2)]
                results[trust] = (codes, await login(PASSWORD, "10.0.0.6"))
        finally:
            await desk.stop()
    alerts.store.close()
    assert results[True] == ([401, 429], 303)  # 10.0.0.5 is locked, the operator at 10.0.0.6 is not
    assert results[False] == ([401, 429], 429)  # without trust: one address, the proxy's, for everyone


@pytest.mark.asyncio
async def test_a_burst_of_concurrent_guesses_reaches_the_password_check_only_up_to_the_limit(tmp_path: Path):
    cheap = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    cfg = DeskConfig(enabled=True, port=0, users={"wang": cheap.hash(PASSWORD)}, login_max_failures=3,
                     login_max_failures_per_address=100)
    alerts = AlertsRuntime(AlertsConfig(), lambda _id: None, db_path=tmp_path / "alerts.sqlite")
    metrics = Metrics()
    desk = DeskServer(cfg, alerts, dict, metrics=metrics)
    await desk.start()
    try:
        async with httpx.AsyncClient(base_url=desk.url, follow_redirects=False) as http:
            async def login(password: str) -> int:
                return (await http.post("/login", data={"user": "wang", "password": password})).status_code

            codes = await asyncio.gather(*(login(WRONG % i) for i in range(12)))
            assert codes.count(429) >= 9 and set(codes) <= {401, 429}
            assert await login(PASSWORD) == 429
    finally:
        await desk.stop()
        alerts.store.close()
    text = generate_latest(metrics.registry).decode()
    assert 'urbansense_desk_logins_total{outcome="failed"} 3.0' in text  # only 3 guesses were ever checked
    assert 'urbansense_desk_logins_total{outcome="refused"} 10.0' in text  # 9 of the burst, then the right one
    assert 'urbansense_desk_lockouts_total{scope="user"} 1.0' in text
