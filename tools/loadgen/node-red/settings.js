// Node-RED settings for the end-to-end benchmark (tools/loadgen): the
// runtime only, no editor, quiet logs, memory context. loadgen sets the
// ports and the subscription QoS in the environment; the flow (flows.json
// beside this file) reads them as ${BENCH_MQTT_PORT} and ${BENCH_QOS}.
module.exports = {
    uiHost: "127.0.0.1",
    uiPort: parseInt(process.env.BENCH_HTTP_PORT || "1880", 10),
    flowFile: "flows.json",
    flowFilePretty: true,
    credentialSecret: false,
    // No editor and no admin API: the flow is deployed from the file at start.
    httpAdminRoot: false,
    httpNodeRoot: "/",
    logging: {
        console: { level: "warn", metrics: false, audit: false },
    },
    contextStorage: { default: { module: "memory" } },
    diagnostics: { enabled: false, ui: false },
    runtimeState: { enabled: false, ui: false },
    telemetry: { enabled: false },
    externalModules: { autoInstall: false, palette: { allowInstall: false }, modules: { allowInstall: false } },
    functionExternalModules: false,
    editorTheme: { projects: { enabled: false } },
};
