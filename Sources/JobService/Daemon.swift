import DSMPipeline
import Foundation
import Hummingbird
import Logging
import ServiceLifecycle

/// The composition root of the service: store, workers and HTTP server built from one configuration.
public enum Daemon {
    /// Prepares the data folder (sub-folders, database and its migrations, presets). A daemon refuses a
    /// presets folder with an invalid file (`checkingPresets`); the admin commands, which use no preset, do
    /// not (an operator mending a preset can still back up, or manage users).
    public static func prepare(_ config: ServiceConfiguration, checkingPresets: Bool = true) async throws -> any JobStore {
        try config.validate()
        for d in [config.dataDirectory, config.uploadsDirectory, config.jobsDirectory, config.presetsDirectory] {
            try FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
        }
        // Seed the operator-editable presets from the bundled ones (never overwrite edited files).
        let bundled = PresetLibrary.defaultFolder()
        if bundled != config.presetsDirectory, let names = try? FileManager.default.contentsOfDirectory(atPath: bundled) {
            for n in names where n.hasSuffix(".json") {
                let dst = (config.presetsDirectory as NSString).appendingPathComponent(n)
                if !FileManager.default.fileExists(atPath: dst) {
                    try? FileManager.default.copyItem(atPath: (bundled as NSString).appendingPathComponent(n), toPath: dst)
                }
            }
        }
        if checkingPresets { try PresetLibrary(folder: config.presetsDirectory).requireValid() }
        return try await openStore(config)
    }

    /// What `serve --check-config` and `worker --check-config` print: the settings in force (a store URL's
    /// password hidden) and the presets a daemon would serve, after the checks a start makes — nothing is
    /// created, written or connected to. Throws what the start would refuse.
    public static func check(_ config: ServiceConfiguration) throws -> Data {
        try config.validate()
        // The data folder's presets, else (a folder not yet prepared) the bundled ones it would be seeded from.
        let folder = FileManager.default.fileExists(atPath: config.presetsDirectory) ? config.presetsDirectory : PresetLibrary.defaultFolder()
        let presets = try PresetLibrary(folder: folder)
        try presets.requireValid()
        var shown = config
        if let url = config.store, url.contains("@") {
            if var c = URLComponents(string: url), c.password != nil {
                c.password = "hidden"
                shown.store = c.string
            } else if URLComponents(string: url) == nil, let at = url.range(of: "@", options: .backwards) {
                // Not a URL Foundation parses: everything before the host is hidden.
                shown.store = "postgres://hidden@" + url[at.upperBound...]
            }
        }
        shown.smtpURL = config.smtpURL.map(SMTPSettings.hidingPassword)
        struct Check: Encodable { var settings: ServiceConfiguration; var presetsFolder: String; var presets: [String] }
        let enc = JSONEncoder()
        enc.outputFormatting = [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes]
        return try enc.encode(Check(settings: shown, presetsFolder: folder, presets: presets.presets.keys.sorted()))
    }

    /// The configured store, its migrations applied.
    public static func openStore(_ config: ServiceConfiguration) async throws -> any JobStore {
        switch config.store {
        case nil, "", "sqlite": return try SQLiteJobStore(path: config.databasePath)
        case let url? where url.hasPrefix("postgres://") || url.hasPrefix("postgresql://"):
            // A database that is not up yet (the daemon started first, a restart): retried with back-off,
            // then one clear error.
            var delay = 1.0
            for attempt in 1... {
                do { return try await PostgresJobStore(url: url) } catch let e as ConfigurationError {
                    guard attempt < config.storeConnectAttempts, e.isUnreachable else { throw e }
                    FileHandle.standardError.write(Data("dsmopt: \(e.description); retrying in \(Int(delay)) s\n".utf8))
                    try await Task.sleep(nanoseconds: UInt64(delay * 1e9))
                    delay = min(30, delay * 2)
                }
            }
            fatalError("unreachable")
        case let other?: throw ConfigurationError.invalid("store '\(other)': expected sqlite or a postgres:// URL")
        }
    }

    /// `dsmopt serve`: HTTP API and workers in one process; SIGTERM/SIGINT shut it down gracefully.
    public static func serve(_ config: ServiceConfiguration) async throws {
        let store = try await prepare(config)
        let metrics = ServiceMetrics()
        let pool = WorkerPool(store: store, config: config, metrics: metrics)
        let api = ServiceAPI(store: store, config: config, metrics: metrics)
        var logger = Logger(label: "dsmopt")
        logger.logLevel = .warning
        let portFile = config.path("server.port")
        // Housekeeping runs whether or not this process has workers (`serve --workers 0` still purges).
        let maintenance = Maintenance(store: store, config: config, sweepInterval: config.sweepSeconds, sweepAge: config.orphanAgeSeconds)
        // Callbacks of ended jobs are sent by every process too, whichever ended the job.
        let callbacks = CallbackSender(store: store, config: config, api: api)
        // And the mail to owners, where there is a mail server.
        let mail: [any Service] = try config.smtpSettings().map { [MailSender(store: store, config: config, api: api, settings: $0)] } ?? []
        // Idle connections (and stalled request bodies) are closed after `idleTimeoutSeconds`.
        let idle = Int64(config.idleTimeoutSeconds * 1000)
        let app = Application(router: api.router(), server: .http1(configuration: .init(idleTimeout: .milliseconds(idle))),
                              configuration: .init(address: .hostname(config.host, port: config.port), serverName: "dsmopt"),
                              services: (config.workers > 0 ? [pool, maintenance, callbacks] : [maintenance, callbacks]) + mail,
                              onServerRunning: { channel in
                                  let port = channel.localAddress?.port ?? config.port
                                  try? "\(port)\n".write(toFile: portFile, atomically: true, encoding: .utf8)
                                  FileHandle.standardError.write(Data("dsmopt: listening on http://\(config.host):\(port) (data \(config.dataDirectory), \(config.workers) worker(s)\(config.publicBase.map { ", links under \($0)" } ?? ""))\n".utf8))
                              },
                              logger: logger)
        do {
            try await app.runService()
        } catch {
            // A port already in use (or an address that cannot be bound) ends the daemon at once with one
            // clear line, instead of leaving its workers running without an API.
            let text = String(describing: error)
            if let r = ["Address already in use", "Cannot assign requested address", "Permission denied"].first(where: { text.contains($0) }) {
                throw ConfigurationError.cannotListen(host: config.host, port: config.port, reason: r.lowercased())
            }
            throw error
        }
        try? FileManager.default.removeItem(atPath: portFile)
    }

    /// `dsmopt worker`: workers only, sharing the data folder's store with a `serve` process.
    public static func work(_ config: ServiceConfiguration) async throws {
        let store = try await prepare(config)
        let pool = WorkerPool(store: store, config: config, metrics: ServiceMetrics())
        var logger = Logger(label: "dsmopt-worker")
        logger.logLevel = .warning
        let maintenance = Maintenance(store: store, config: config, sweepInterval: config.sweepSeconds, sweepAge: config.orphanAgeSeconds)
        let api = ServiceAPI(store: store, config: config, metrics: ServiceMetrics())
        let callbacks = CallbackSender(store: store, config: config, api: api)
        let mail: [any Service] = try config.smtpSettings().map { [MailSender(store: store, config: config, api: api, settings: $0)] } ?? []
        let group = ServiceGroup(configuration: .init(services: [pool, maintenance, callbacks] + mail, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        try await group.run()
    }
}
