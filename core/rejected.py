"""`Rejected`: a message refused on its way to becoming a reading, with the reason it is refused."""

from __future__ import annotations


class Rejected(ValueError):
    """A message that becomes a dead letter instead of a reading.

    `reason` is a short stable label (a metrics label and the dead-letter store's key, e.g.
    `bad_json`, `unknown_device`, `decode_error`); `detail` says what exactly is wrong, for a
    person; `device_key` is the sender's DevEUI / IMEI / Modbus address when it is known.
    """

    def __init__(self, reason: str, detail: str, device_key: str | None = None) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
        self.device_key = device_key

    def naming(self, device_key: str | None) -> Rejected:
        """This refusal with `device_key` (the DevEUI / IMEI its envelope named) unless it names one already:
        a payload that is bad still leaves its dead letter findable by device."""
        if self.device_key is None:
            self.device_key = device_key
        return self
