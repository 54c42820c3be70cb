/*
 * Nwave NCC405 car counter: TS013 uplink decoder, decodeUplink({bytes, fPort, recvTime}).
 *
 * Written for urbansense from the frame layout published in The Things Network's device
 * repository (TheThingsNetwork/lorawan-devices, vendor/nwave/ncc405.js and
 * ncc405-codec.yaml, MIT licence, (c) The Things Industries); not a copy of that file.
 * Licence of this file: the urbansense project's.
 *
 *   fPort 1  counter update   2 bytes   vehicles counted, big-endian
 *   fPort 2  heartbeat        3 bytes   health (bits 7..3), battery 2500 + 4*n mV, 24 h mean likewise
 *   fPort 3  start-up         4 bytes   firmware major.minor.patch, reset cause
 *   fPort 6  debug            any       opaque
 */
var RESET_CAUSES = ["rejoining_lorawan_network", "watchdog", "power_on", "user_request",
                    undefined, undefined, "brownout", "other"];

function millivolts(n) {
  return (2500 + n * 4) / 1000;
}

function decodeUplink(input) {
  var b = input.bytes;
  var need = { 1: 2, 2: 3, 3: 4 }[input.fPort];
  if (need !== undefined && b.length !== need) {
    return { errors: ["fPort " + input.fPort + " frame must be " + need + " bytes, got " + b.length] };
  }
  switch (input.fPort) {
    case 1:
      return { data: { type: "counter_update", counter_value: (b[0] << 8) | b[1] } };
    case 2:
      return { data: { type: "heartbeat", hw_health_status: b[0] >> 3,
                       battery_voltage: millivolts(b[1]), battery_voltage_mean_24h: millivolts(b[2]) } };
    case 3:
      var cause = RESET_CAUSES[b[3]];
      return {
        data: { type: "startup", firmware_version: b[0] + "." + b[1] + "." + b[2], reset_cause: cause },
        warnings: cause === undefined ? ["unknown reset cause " + b[3]] : []
      };
    case 6:
      return { data: { type: "debug", bytes: b } };
    default:
      return { errors: ["unknown fPort " + input.fPort] };
  }
}
