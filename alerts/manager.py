"""The alert state machine: one alert per (rule, device), pending → firing → resolved, acknowledgeable.

`handle` turns a rule transition into a state change and, when it is a notifying event
(firing, severity change, resolve), into outbox rows for the routed receivers, written in
the same SQLite transaction. Silences and inhibition hold a firing's notifications back;
`repeat_due` releases them when the hold ends and re-notifies firing, unacknowledged alerts.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

from loguru import logger

from alerts.config import InhibitRuleConfig
from alerts.errors import AlertsError
from alerts.matchers import Matcher, all_match, parse_matcher
from alerts.model import SEVERITY_RANK, AlertRecord, Event, Measured, Notice, fingerprint
from alerts.notifiers.base import Notifier
from alerts.routing import Router
from alerts.store import AlertStore, Enqueue, HistoryEntry
from core.device import Device
from core.transition import AlertState, AlertTransition, Severity

DEVICE_LABELS = ("kind", "model", "district", "street", "zone_class", "site")
IDENTITY_LABELS = ("alertname", "rule_id", "device_id", "route", "severity")
"""Labels every alert carries beside the device's and its rule's (`alert_labels`)."""


def case_group(a: AlertRecord) -> str:
    """What one case is about on one device: the rule's `case_group` label, else the device kind when
    the rule files cases (`case_category`), else the rule itself. So the rising-water warning and the
    15 cm and 27 cm levels of one gauge are one case, and so are a bin's 80 % and 100 %."""
    labels = a.labels
    if labels.get("case_group"):
        return labels["case_group"]
    if labels.get("case_category") and labels.get("kind"):
        return f"kind:{labels['kind']}"
    return f"rule:{a.rule_id}"


@dataclass(slots=True, frozen=True)
class Outcome:
    """What `handle` did: the event (None when nothing notifies), rows enqueued, why held back."""

    fingerprint: str
    state: str
    event: Event | None
    enqueued: int
    suppressed_by: str | None = None
    note: str = ""


def alert_labels(t: AlertTransition, device: Device | None) -> dict[str, str]:
    """Labels to match on: the device's registry fields, the transition's labels, then identity."""
    labels: dict[str, str] = {}
    if device is not None:
        labels.update({k: str(getattr(device, k)) for k in DEVICE_LABELS if getattr(device, k)})
    labels.update(dict(t.labels))
    labels.update(alertname=t.rule_id, rule_id=t.rule_id, device_id=t.device_id, route=t.route,
                  severity=str(t.severity))
    return labels


def check_transition(t: AlertTransition) -> None:
    """Refuse a transition the state machine cannot act on, saying which field is wrong."""
    problems = []
    if not isinstance(t.rule_id, str) or not t.rule_id:
        problems.append(f"rule_id {t.rule_id!r} is not a non-empty string")
    if not isinstance(t.device_id, str) or not t.device_id:
        problems.append(f"device_id {t.device_id!r} is not a non-empty string")
    if t.to_state not in set(AlertState):
        problems.append(f"to_state {t.to_state!r} is not one of {', '.join(AlertState)}")
    if t.severity not in SEVERITY_RANK:
        problems.append(f"severity {t.severity!r} is not one of {', '.join(SEVERITY_RANK)}")
    if not isinstance(t.time_ns, int) or isinstance(t.time_ns, bool):
        problems.append(f"time_ns {t.time_ns!r} is not an integer")
    if problems:
        raise AlertsError(f"alert transition refused: {'; '.join(problems)}")


class AlertLifecycle:
    """Synchronous and cheap: call `handle` for every transition, `repeat_due` every few seconds."""

    def __init__(self, store: AlertStore, router: Router, notifiers: Mapping[str, Notifier],
                 devices: Callable[[str], Device | None], *, repeat_interval_s: float = 4 * 3600.0,
                 inhibit_rules: Sequence[InhibitRuleConfig] = (), timezone: str = "Asia/Shanghai",
                 clock: Callable[[], int] = time.time_ns, on_enqueue: Callable[[], None] | None = None) -> None:
        named = set(router.default_receivers) | {n for r in router.routes for n in r.receivers}
        missing = sorted(named - set(notifiers))
        if missing:
            raise AlertsError(f"routes name receivers that have no notifier: {', '.join(missing)}")
        self.store = store
        self.router = router
        self.notifiers = notifiers
        self.devices = devices
        self.repeat_interval_ns = int(repeat_interval_s * 1e9)
        self.inhibit_rules = tuple(inhibit_rules)
        self.timezone = timezone
        self.clock = clock
        self.on_enqueue = on_enqueue

    def _device(self, device_id: str) -> Device | None:
        try:
            return self.devices(device_id)
        except Exception as exc:
            logger.warning("device lookup for {} failed: {}", device_id, exc)
            return None

    # transitions

    def handle(self, t: AlertTransition) -> Outcome:
        """Apply one transition. Stale (older than the alert's last change) and repeated ones change nothing;
        a malformed one raises `AlertsError`."""
        check_transition(t)
        fp = fingerprint(t.rule_id, t.device_id)
        now = self.clock()
        device = self._device(t.device_id)
        labels = alert_labels(t, device)
        with self.store.transaction():
            cur = self.store.get(fp)
            if cur is not None and t.time_ns < cur.updated_ns:
                return Outcome(fp, cur.state, None, 0, note="stale transition ignored")
            a = replace(cur, labels=dict(cur.labels), receivers=list(cur.receivers)) if cur else AlertRecord(
                fp, t.rule_id, t.device_id, state=AlertState.INACTIVE, severity=t.severity)
            prev_state, prev_sev = a.state, a.severity
            event, note = self._next_state(a, t)
            if event is None and a.state == prev_state and a.severity == prev_sev:
                if cur is not None and a.state is AlertState.FIRING and t.to_state == AlertState.FIRING \
                        and t.time_ns > cur.updated_ns:  # firing → firing: the row shows the newer values
                    a.value, a.threshold, a.eta_s, a.updated_ns, a.summary = (t.value, t.threshold, t.eta_s,
                                                                              t.time_ns, t.summary)
                    a.measured = Measured(t.field_name, t.aggregate, t.target, t.current, t.rate_per_s,
                                          a.measured.held_s)
                    self.store.save(a, now_ns=now)
                    return Outcome(fp, a.state, None, 0, note="already firing: values updated")
                return Outcome(fp, a.state, None, 0, note=note or "no change")
            labels["severity"] = a.severity
            a.labels, a.route, a.summary = labels, t.route, t.summary
            a.value, a.threshold, a.eta_s, a.updated_ns = t.value, t.threshold, t.eta_s, t.time_ns
            a.measured = Measured(t.field_name, t.aggregate, t.target, t.current, t.rate_per_s,
                                  t.held_s if t.held_s is not None else a.measured.held_s)
            rows, note2 = self._plan(a, event, prev_sev, t.time_ns, device, now) if event else ([], "")
            note = "; ".join(x for x in (note, note2) if x)
            history = HistoryEntry(t.time_ns, prev_state, a.state, a.severity, t.value, t.threshold,
                                   str(event) if event else None, a.seq if rows else None,
                                   tuple(r.receiver for r in rows), note)
            added = self.store.save(a, history, rows, now_ns=now)
        logger.info("alert {} {} on {}: {} → {} ({}){}{}", a.id or fp, a.rule_id, a.device_id, prev_state,
                    a.display_state, a.severity, f", {event}" if event else "", f"; {note}" if note else "")
        if added and self.on_enqueue and not self.store.in_transaction:  # inside a batch: woken at its commit
            self.on_enqueue()
        return Outcome(fp, a.state, event, added, a.suppressed_by, note)

    def _next_state(self, a: AlertRecord, t: AlertTransition) -> tuple[Event | None, str]:
        to = t.to_state
        if to == AlertState.PENDING:
            if a.state is AlertState.FIRING:
                return None, "pending while firing ignored"
            a.state = AlertState.PENDING
            a.severity = t.severity
            return None, ""
        if to == AlertState.FIRING:
            new_sev = t.severity
            if a.state is not AlertState.FIRING:
                a.state, a.severity = AlertState.FIRING, new_sev
                return Event.FIRING, ""
            if new_sev != a.severity:
                a.severity = new_sev
                return Event.ESCALATED, ""
            return None, "already firing"
        if a.state is AlertState.FIRING:
            a.state, a.resolved_ns = AlertState.RESOLVED, t.time_ns
            return Event.RESOLVED, ""
        if a.state is AlertState.PENDING:
            a.state = AlertState.RESOLVED if to == AlertState.RESOLVED else AlertState.INACTIVE
            return None, "pending cleared before firing"
        return None, f"already {a.state}"

    def _plan(self, a: AlertRecord, event: Event, prev_sev: str, time_ns: int, device: Device | None,
              now: int) -> tuple[list[Enqueue], str]:
        if event is Event.FIRING:
            a.episode += 1
            a.started_ns, a.resolved_ns = time_ns, None
            a.notified, a.receivers, a.suppressed_by = False, [], None
            a.acked_by = a.acked_ns = a.ack_comment = None
            a.case_key = a.case_id = None
            return self._open(a, time_ns, device, now)
        if event is Event.ESCALATED:
            a.acked_by = a.acked_ns = a.ack_comment = None
            if not a.notified:
                return self._open(a, time_ns, device, now)
            held = self._suppressed_by(a, now)
            if held:
                a.suppressed_by = held
                return [], f"held back: {held}"
            targets = self._targets(a)
            plan: list[tuple[str, Event, Event | None]] = [(r, Event.ESCALATED, None) for r in a.receivers]
            plan += [(r, Event.FIRING, None) for r in targets if r not in a.receivers]
            a.receivers += [r for r in targets if r not in a.receivers]
            return self._render(a, plan, prev_sev, time_ns, device, now), ""
        if event is Event.RESOLVED:
            if not a.notified:
                return [], "resolved before anyone was told"
            open_elsewhere = {r for s in self._spot_siblings(a) if s.case_key == a.case_key for r in s.receivers}
            plan = [(r, Event.RESOLVED, Event.ESCALATED if r in open_elsewhere else None) for r in a.receivers]
            return self._render(a, plan, None, time_ns, device, now), ""
        return [], ""

    def _open(self, a: AlertRecord, time_ns: int, device: Device | None, now: int) -> tuple[list[Enqueue], str]:
        """Tell the routed receivers an alert fires, unless a silence or an inhibiting alert holds it back."""
        held = self._suppressed_by(a, now)
        a.suppressed_by = held
        if held:
            return [], f"held back: {held}"
        targets = self._targets(a)
        a.notified, a.receivers = True, list(targets)
        if not targets:
            return [], "no receiver routed"
        told: set[str] = set()
        for sibling in self._spot_siblings(a):
            if sibling.case_key:  # join the spot's open case: an update to it, not a second case
                a.case_key = a.case_key or sibling.case_key
                if sibling.case_key == a.case_key:
                    told.update(sibling.receivers)
        plan = [(r, Event.FIRING, Event.ESCALATED if r in told else None) for r in targets]
        return self._render(a, plan, None, time_ns, device, now), ""

    def _spot_siblings(self, a: AlertRecord) -> list[AlertRecord]:
        """Other firing, notified alerts of the same spot (device and case group), oldest first."""
        group = case_group(a)
        return [s for s in self.store.firing_on_device(a.device_id, exclude=a.fingerprint)
                if s.notified and case_group(s) == group]

    def _case_severity(self, a: AlertRecord) -> Severity:
        """The spot's highest firing level (this alert's, while it fires, and its case siblings')."""
        levels = [s.severity for s in self._spot_siblings(a) if s.case_key == a.case_key]
        if a.state is AlertState.FIRING:
            levels.append(a.severity)
        return Severity(max(levels, key=lambda sev: SEVERITY_RANK.get(sev, 0))) if levels else Severity(a.severity)

    def _targets(self, a: AlertRecord) -> tuple[str, ...]:
        return self.router.receivers(route=a.route, rule_id=a.rule_id, severity=a.severity, labels=a.labels)

    def _render(self, a: AlertRecord, plan: Iterable[tuple[str, Event, Event | None]], prev_sev: str | None,
                time_ns: int, device: Device | None, now: int, *, operator: str | None = None,
                comment: str | None = None) -> list[Enqueue]:
        plan = list(plan)
        if not plan:
            return []
        a.seq += 1
        a.last_notified_ns = now
        if a.case_key is None:
            a.case_key = f"{a.fingerprint}:{a.seq}"
        case_severity = self._case_severity(a)
        rows = []
        for receiver, event, case_event in plan:
            notice = Notice(
                fingerprint=a.fingerprint, seq=a.seq, event=event, rule_id=a.rule_id, device_id=a.device_id,
                severity=a.severity, previous_severity=prev_sev if event is Event.ESCALATED else None,
                route=a.route, value=a.value, threshold=a.threshold, eta_s=a.eta_s, summary=a.summary,
                labels=a.labels, started_ns=a.started_ns or time_ns, time_ns=time_ns, resolved_ns=a.resolved_ns,
                episode=a.episode, case_key=a.case_key, device=device,
                timezone=self.timezone, measured=a.measured, case_event=case_event, operator=operator,
                comment=comment, case_severity=case_severity)
            try:
                body = self.notifiers[receiver].render(notice)
            except Exception as exc:
                logger.exception("rendering {} for {} failed", event, receiver)
                rows.append(Enqueue(receiver, str(event), {}, a.case_key, error=f"render failed: {exc!r}"))
                continue
            if body is not None:
                rows.append(Enqueue(receiver, str(event), body, a.case_key))
        return rows

    # holds

    def _suppressed_by(self, a: AlertRecord, now: int) -> str | None:
        for s in self.store.silences(active_at_ns=now):
            if all_match(s.matchers, a.labels):
                return f"silence {s.id} ({s.comment})"
        for rule in self.inhibit_rules:
            if any(a.labels.get(k, "") != v for k, v in rule.target_match.items()):
                continue
            if any(not a.labels.get(k) for k in rule.equal):
                continue
            sources = self.store.firing_matching(
                {**rule.source_match, **{k: a.labels[k] for k in rule.equal}}, exclude=a.fingerprint)
            if sources:
                s = sources[0]
                return f"inhibited by alert {s.id} ({s.rule_id} on {s.device_id}; {rule.name or 'inhibit rule'})"
        return None

    def repeat_due(self, now_ns: int | None = None) -> int:
        """Re-notify firing, unacknowledged alerts whose repeat interval has passed, and send firings that
        were held back by a silence or an inhibiting alert that has since ended. Returns rows enqueued."""
        now = self.clock() if now_ns is None else now_ns
        total = 0
        repeat_before = now - self.repeat_interval_ns if self.repeat_interval_ns else None
        for snapshot in self.store.needing_notice(repeat_before):
            device = self._device(snapshot.device_id)
            with self.store.transaction():
                a = self.store.get(snapshot.fingerprint)
                if a is None or a.state is not AlertState.FIRING:
                    continue
                if not a.notified:
                    rows, note = self._open(a, now, device, now)
                    if not rows and not a.notified:
                        continue
                    event = Event.FIRING
                    note = note or "released: hold ended"
                else:
                    if (not self.repeat_interval_ns or a.acked_by
                            or (a.last_notified_ns or 0) + self.repeat_interval_ns > now):
                        continue
                    held = self._suppressed_by(a, now)
                    if held:
                        continue
                    rows = self._render(a, [(r, Event.REPEAT, None) for r in a.receivers], None, now, device, now)
                    event, note = Event.REPEAT, ""
                    a.last_notified_ns = now
                firing = AlertState.FIRING
                history = HistoryEntry(now, firing, firing, a.severity, a.value, a.threshold, str(event), a.seq,
                                       tuple(r.receiver for r in rows), note) if rows or note else None
                total += self.store.save(a, history, rows, now_ns=now)
        if total and self.on_enqueue:
            self.on_enqueue()
        return total

    # operators

    def ack(self, ref: str, by: str, comment: str = "") -> AlertRecord:
        """Acknowledge a firing alert: no more repeats until it resolves or changes severity. The open
        case hears of it (an update naming `by` and the comment)."""
        now = self.clock()
        with self.store.transaction():
            a = self.store.ack(ref, by, comment, now)
            added = self._tell_case(a, now, by, f"已确认（{by}）" + (f"：{comment}" if comment else ""))
        logger.info("alert {} {} on {} acknowledged by {}: {}", a.id, a.rule_id, a.device_id, by, comment)
        if added and self.on_enqueue:
            self.on_enqueue()
        return self.store.get(a.fingerprint) or a

    def silence_alert(self, ref: str, by: str, comment: str, duration_s: float) -> int:
        """Silence one alert (its rule on its device) for `duration_s`; the open case hears of it."""
        now = self.clock()
        with self.store.transaction():
            a = self.store.find(ref)
            sid = self.silence([Matcher("rule_id", "=", a.rule_id), Matcher("device_id", "=", a.device_id)],
                               now, now + int(duration_s * 1e9), comment, by)
            a = self.store.get(a.fingerprint) or a
            added = self._tell_case(a, now, by, f"已静默 {duration_s / 60:.0f} 分钟（{by}）：{comment}")
        logger.info("alert {} {} on {} silenced by {} for {:.0f} s: {}", a.id, a.rule_id, a.device_id, by,
                    duration_s, comment)
        if added and self.on_enqueue:
            self.on_enqueue()
        return sid

    def _tell_case(self, a: AlertRecord, now: int, by: str, comment: str) -> int:
        """Enqueue an operator's update for the receivers that take them (the case platform)."""
        if a.state != "firing" or not a.notified:
            return 0
        targets = [r for r in a.receivers if getattr(self.notifiers.get(r), "operator_updates", False)]
        rows = self._render(a, [(r, Event.ACKNOWLEDGED, None) for r in targets], None, now,
                            self._device(a.device_id), now, operator=by, comment=comment)
        history = HistoryEntry(now, a.state, a.state, a.severity, a.value, a.threshold, str(Event.ACKNOWLEDGED),
                               a.seq, tuple(r.receiver for r in rows), comment) if rows else None
        return self.store.save(a, history, rows, now_ns=now)

    def silence(self, matchers: Iterable[str | Matcher], start_ns: int, end_ns: int, comment: str,
                by: str) -> int:
        """Hold back notifications of alerts whose labels match all `matchers` between start and end."""
        parsed = [m if isinstance(m, Matcher) else parse_matcher(m) for m in matchers]
        return self.store.add_silence(parsed, start_ns, end_ns, comment, by, self.clock())
