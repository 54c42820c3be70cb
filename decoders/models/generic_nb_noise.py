"""NB-IoT environmental noise monitor (mains powered, reports every minute), frame defined by urbansense.

The `collectors/nbiot/frame.py` envelope with message type 0x01 and no ack (the monitor
streams; a lost report is replaced a minute later):

    payload offset size  field
    0              2     LAeq over the interval, 0.1 dB(A)
    2              2     LAmax, 0.1 dB(A)
    4              2     LAmin, 0.1 dB(A)

Platform-decoded form: `LAeq`, `LAmax`, `LAmin` in dB(A).
"""

from __future__ import annotations

from decoders.engines.nbiot import Item, NbiotStructCodec
from decoders.model_info import ModelInfo
from decoders.ranges import FieldRange

CODEC = NbiotStructCodec(
    "generic-nb-noise", "noise",
    (Item("laeq_db", "H", 10), Item("lmax_db", "H", 10), Item("lmin_db", "H", 10)),
    profile={"LAeq": "laeq_db", "LAmax": "lmax_db", "LAmin": "lmin_db"},
    ack_requested=False,
)

MODEL = ModelInfo(
    model="generic-nb-noise", kind="noise", vendor="generic", title="NB-IoT noise monitor (UDP frame)",
    source="native", codec=CODEC,
    ranges={"laeq_db": FieldRange(30, 130, 0.1), "lmax_db": FieldRange(30, 130, 0.1),
            "lmin_db": FieldRange(30, 130, 0.1)},
    reference="urbansense frame (collectors/nbiot/frame.py); class 2 sound level meter, 30–130 dB(A)",
)
