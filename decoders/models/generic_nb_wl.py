"""NB-IoT ultrasonic road water-level sensor (battery, PSM), frame defined by urbansense.

No public standard frame exists for NB-IoT sensors; this model is the realistic shape of
the many Chinese ultrasonic level sensors: the `collectors/nbiot/frame.py` envelope
(0x68, IMEI BCD, type, sequence, device time, length, payload, CRC-16/MODBUS, 0x16) with
message type 0x01, ack requested (the device stays awake for it, then sleeps):

    payload offset size  field
    0              2     distance to the water surface, mm (0xFFFF = no echo)
    2              2     battery voltage, mV
    4              2     temperature, 0.1 °C, signed (0x7FFF = no probe)

Platform-decoded form (CTWing profile / OneNET thing model): `distance`, `battery_voltage`,
`temperature`, in canonical units.
"""

from __future__ import annotations

from decoders.engines.nbiot import Item, NbiotStructCodec
from decoders.model_info import ModelInfo
from decoders.ranges import FieldRange

CODEC = NbiotStructCodec(
    "generic-nb-wl", "water_level",
    (Item("distance_mm", "H", 1, {0xFFFF: "no echo"}),
     Item("battery_v", "H", 1000),
     Item("temperature_c", "h", 10, {0x7FFF: "no temperature probe"})),
    profile={"distance": "distance_mm", "battery_voltage": "battery_v", "temperature": "temperature_c"},
    ack_requested=True,
)

MODEL = ModelInfo(
    model="generic-nb-wl", kind="water_level", vendor="generic", title="NB-IoT ultrasonic water level (UDP frame)",
    source="native", codec=CODEC,
    ranges={"distance_mm": FieldRange(300, 8000, 1), "battery_v": FieldRange(2.5, 3.7, 0.001),
            "temperature_c": FieldRange(-40, 85, 0.1)},
    install_params=("mount_height_mm",), dead_zone_mm=300.0,
    reference="urbansense frame (collectors/nbiot/frame.py); typical NB-IoT ultrasonic level sensor: "
              "0.3–8 m, PSM with ack",
)
