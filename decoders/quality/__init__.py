"""Data quality: every reading judged good, suspect or bad by checks a city recognises; nothing dropped.

    judge = Judge(kinds={"noise": {"stuck_after_s": 7200}})
    judge.judge(device_id, kind, model, time_ns, fields, raw, install, interval_s) -> Verdict
"""

from decoders.quality.checks import BAD, CHECKS, GOOD, QUALITIES, SEVERITY, SUSPECT
from decoders.quality.judge import Judge, Verdict
from decoders.quality.profiles import KIND_DEFAULTS, Profile, build_profile

__all__ = ["BAD", "CHECKS", "GOOD", "KIND_DEFAULTS", "QUALITIES", "SEVERITY", "SUSPECT", "Judge", "Profile",
           "Verdict", "build_profile"]
