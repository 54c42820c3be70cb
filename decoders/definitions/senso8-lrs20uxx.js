// SENSO8 LRS20Uxx sensor report (fPort 10), written for urbansense from the vendor's documented
// frame: [type=12][event flags][battery %][distance, 0.1 cm, big-endian 16 bit][state].
function decodeUplink(input) {
  var b = input.bytes;
  if (input.fPort !== 10) {
    return { errors: ["fPort " + input.fPort + " carries no sensor report (expected 10)"] };
  }
  if (b.length < 6 || b[0] !== 12) {
    return { errors: ["not an LRS20Uxx report (" + b.length + " bytes, type " + b[0] + ")"] };
  }
  var events = [];
  var names = ["heartbeat", "", "distance_high", "distance_low"];
  for (var i = 0; i < names.length; i++) {
    if (names[i] && (b[1] >> i) & 1) {
      events.push(names[i]);
    }
  }
  return {
    data: { battery: b[2], distance: ((b[3] << 8) | b[4]) / 10, state: b[5], events: events },
    warnings: [],
  };
}
