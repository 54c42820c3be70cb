// Node-RED function node: a ChirpStack v4 uplink event (msg.payload, parsed by the mqtt-in node)
// of a Dragino LDDS75 → one InfluxDB line. The frame as in Dragino's own LDDS75_Decoder_V1.1.4.js
// (fPort 2: battery mV & 0x3FFF, distance mm, interrupt flag, DS18B20 0.1 °C, sensor flag);
// depth = mount height − distance, never negative. The device table (DevEUI → tag string and
// mount height) is put into the node's context by its "On Start" code.
const up = msg.payload;
const dev = context.get("devices")[up.deviceInfo && up.deviceInfo.devEui];
if (!dev) { node.warn("unknown device"); return null; }
const b = Buffer.from(up.data || "", "base64");
if (up.fPort !== 2 || (b.length !== 8 && b.length !== 5)) { node.warn("not a measurement frame"); return null; }
const battery = (b.readUInt16BE(0) & 0x3FFF) / 1000;
const distance = b.readUInt16BE(2);
const interrupt = (b[4] & 0x01) === 1;
const temp = b.length === 8 ? b.readInt16BE(5) : 0;
const sensor = b.length === 8 ? b[7] & 0x01 : 1;
const fields = ["battery_v=" + battery, "dragino_interrupt=" + interrupt];
if (sensor && distance !== 0) {
    fields.push("distance_mm=" + distance, "depth_mm=" + Math.max(0, dev.mount - distance));
}
if (temp) fields.push("temperature_c=" + temp / 10);
// RFC 3339 with up to 9 fractional digits → ns (Date keeps only ms)
const m = /^(.+T\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$/.exec(up.time);
if (!m) { node.warn("bad time " + up.time); return null; }
const ns = BigInt(Date.parse(m[1] + m[3])) * 1000000n + BigInt(((m[2] || "") + "000000000").slice(0, 9));
msg.payload = dev.head + " " + fields.join(",") + " " + ns.toString();
return msg;
