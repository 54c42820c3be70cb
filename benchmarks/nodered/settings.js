// Node-RED settings for benchmarks/nodered: loopback only, no editor, no admin API, no telemetry.
// nodered_bench.py starts Node-RED with `--settings settings.js --userDir <temp> --no-telemetry`.
module.exports = {
    uiHost: "127.0.0.1",                      // never beyond loopback
    uiPort: parseInt(process.env.NODE_RED_BENCH_PORT || "1880", 10),
    httpAdminRoot: false,                     // no editor and no admin API at all (with httpNodeRoot
                                              // false too, Node-RED listens on no port)
    disableEditor: true,
    httpNodeRoot: false,                      // no HTTP-in endpoints
    httpStatic: false,
    flowFile: "flows.json",
    credentialSecret: false,
    functionExternalModules: false,
    externalModules: { autoInstall: false, palette: { allowInstall: false } },
    diagnostics: { enabled: false, ui: false },
    telemetry: { enabled: false, updateNotification: false },
    runtimeState: { enabled: false },
    logging: { console: { level: "info", metrics: false, audit: false } },
    editorTheme: { tours: false, projects: { enabled: false } },
};
