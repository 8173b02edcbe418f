import Foundation
import JobService
import TestSupport
import Testing

/// The operator's configuration: a file or environment that says something the daemon cannot honour stops it
/// at start, with the file and the setting named, instead of leaving a default in force unnoticed.
@Suite struct ConfigurationTests {
    /// Loads `json` as a data folder's dsmopt.json (and validates it, as every daemon command does); the
    /// error's description when refused.
    static func load(_ json: String, environment: [String: String] = [:]) throws -> Result<ServiceConfiguration, ConfigurationError> {
        let dir = try TemporaryFolder()
        try json.write(toFile: dir.path("dsmopt.json"), atomically: true, encoding: .utf8)
        do {
            let c = try ServiceConfiguration.load(dataDirectory: dir.url.path, file: nil, environment: environment)
            try c.validate()
            return .success(c)
        } catch let e as ConfigurationError {
            return .failure(e)
        }
    }

    static func refusal(_ json: String, environment: [String: String] = [:]) throws -> String? {
        if case .failure(let e) = try load(json, environment: environment) { return e.description }
        return nil
    }

    @Test func misspeltMistypedOrMalformedSettingsAreRefused() throws {
        for (json, expected) in [
            (#"{"callbackAtempts": 3}"#, "unknown setting 'callbackAtempts' (did you mean 'callbackAttempts'?)"),
            (#"{"Port": 8080}"#, "unknown setting 'Port' (did you mean 'port'?)"),
            (#"{"quotaForEveryone": 1}"#, "unknown setting 'quotaForEveryone'"),
            (#"{"defaultQuota": {"maxConcurrentJob": 2}}"#, "unknown setting 'defaultQuota.maxConcurrentJob' (did you mean 'defaultQuota.maxConcurrentJobs'?)"),
            (#"{"port": "8080"}"#, "port must be a whole number"),
            (#"{"metricsPublic": "yes"}"#, "metricsPublic must be true or false"),
            (#"{"callbackAllowedHosts": ["hooks.example.org", 3]}"#, "callbackAllowedHosts[1] must be a string"),
            (#"{"port": 80.5}"#, "port = 80.5 does not fit the setting"),
            (#"{"defaultQuota": {"maxConcurrentJobs": 2.5}}"#, "defaultQuota.maxConcurrentJobs = 2.5 does not fit the setting"),
            (#"{"port": 8080,"#, "not valid JSON"),
            (#"{"maxUploadBytes": null}"#, "'maxUploadBytes' is null: give it a value, or leave the setting out for its default"),
            (#"{"smtpURL": null, "port": 8080}"#, "'smtpURL' is null"),
            (#"{"defaultQuota": {"storageBytes": null}}"#, "'defaultQuota.storageBytes' is null"),
            (#"[{"port": 8080}]"#, "expected a JSON object of settings"),
        ] {
            let why = try #require(try Self.refusal(json), "\(json) was accepted")
            #expect(why.contains("dsmopt.json: ") && why.contains(expected), "\(json): \(why)")
        }
        // Values of the right type but out of range: refused by the validation, the setting named.
        for (json, expected) in [(#"{"callbackSecretGraceSeconds": -1}"#, "callbackSecretGraceSeconds -1.0 outside"),
                                 (#"{"callbackAttempts": 0}"#, "callbackAttempts 0 outside"),
                                 (#"{"defaultQuota": {"storageBytes": -5}}"#, "defaultQuota's limits must not be negative"),
                                 // Finer than a run makes: such jobs would be accepted, then fail.
                                 (#"{"minResolutionFactor": 0.25}"#, "minResolutionFactor 0.25 is below 0.5"),
                                 (#"{"retentionSeconds": 1e300}"#, "retentionSeconds 1e+300 is longer than 100 years")] {
            let why = try #require(try Self.refusal(json), "\(json) was accepted")
            #expect(why.contains(expected), "\(json): \(why)")
        }
    }

    @Test func environmentNumbersThatDoNotParseAreRefused() throws {
        for (name, value) in [("DSMOPT_PORT", "80a"), ("DSMOPT_WORKERS", "two"), ("DSMOPT_MAX_UPLOAD_BYTES", "8G"), ("DSMOPT_RETENTION_SECONDS", "21d")] {
            let why = try #require(try Self.refusal("{}", environment: [name: value]), "\(name)=\(value) was accepted")
            #expect(why.contains("\(name) must be a number, not '\(value)'"), "\(why)")
        }
        guard case .success(let c) = try Self.load(#"{"port": 9000, "workers": 4}"#, environment: ["DSMOPT_PORT": "9100", "DSMOPT_WORKERS": " 3"]) else {
            Issue.record("refused"); return
        }
        #expect(c.port == 9100 && c.workers == 3, "the environment overrides the file: port \(c.port), workers \(c.workers)")
    }

    /// A valid file is read as written; `defaultQuota` may give some of its limits, the others keep their
    /// defaults.
    @Test func aValidFileIsReadAsWritten() throws {
        let json = #"{"port": 9000, "callbackAttempts": 3, "callbackSecretGraceSeconds": 3600, "callbackAllowedHosts": ["hooks.internal"], "defaultQuota": {"cpuSecondsPerMonth": 1000}, "metricsPublic": true}"#
        guard case .success(let c) = try Self.load(json) else { Issue.record("refused: \(json)"); return }
        #expect(c.port == 9000 && c.callbackAttempts == 3 && c.callbackSecretGraceSeconds == 3600 && c.callbackAllowedHosts == ["hooks.internal"] && c.metricsPublic)
        #expect(c.defaultQuota.cpuSecondsPerMonth == 1000 && c.defaultQuota.maxConcurrentJobs == Quota().maxConcurrentJobs
                && c.defaultQuota.storageBytes == Quota().storageBytes, "\(c.defaultQuota)")
    }

    /// Every setting the README's table of settings names for the config file is one the daemon knows (null
    /// leaves any known setting at its default; an unknown one is refused whatever its value).
    @Test func theREADMEsSettingsAreKnown() throws {
        let readme = try String(contentsOf: TestData.packageRoot.appendingPathComponent("README.md"), encoding: .utf8)
        func quoted(_ text: Substring) -> [String] {
            text.split(separator: "`", omittingEmptySubsequences: false).enumerated().filter { $0.offset % 2 == 1 }.map { String($0.element) }
        }
        let table = try #require(readme.range(of: "| setting | flag | environment | config file key | default |\n|---|---|---|---|---|\n"))
        var keys: [String] = []
        for row in readme[table.upperBound...].split(separator: "\n").prefix(while: { $0.hasPrefix("|") }) {
            keys += quoted(row.split(separator: "|", omittingEmptySubsequences: false)[4])
        }
        // The paragraph of further settings: each `name` before its default (and no DSMOPT_ variable).
        let further = try #require(readme.range(of: "Further settings (config file keys):"))
        let paragraph = readme[further.upperBound...].components(separatedBy: "\n\n")[0]
        keys += quoted(Substring(paragraph)).filter { !$0.hasPrefix("DSMOPT_") }
        #expect(keys.count >= 30, "\(keys)")
        // A null is refused after the keys are checked: a known setting gets the null's refusal, an unknown one
        // "unknown setting".
        for key in Set(keys) {
            let why = try Self.refusal("{\"\(key)\": null}") ?? "accepted"
            #expect(why.contains("'\(key)' is null"), "README names '\(key)', which the daemon does not know: \(why)")
        }
    }

    /// `dsmopt serve` on such a file: exit 2, the reason on stderr, nothing listening.
    @Test func theDaemonStopsAtStartOnABadFile() throws {
        let dir = try TemporaryFolder()
        try #"{"maxUploadByte": 1000000}"#.write(toFile: dir.path("dsmopt.json"), atomically: true, encoding: .utf8)
        let r = try run(try dsmoptExecutable(), ["serve", "--data", dir.url.path, "--port", "0"], timeout: 30)
        #expect(r.status == 2 && r.stderr.contains("unknown setting 'maxUploadByte' (did you mean 'maxUploadBytes'?)"), "exit \(r.status): \(r.stderr)")
        #expect(!r.stderr.contains("listening") && !FileManager.default.fileExists(atPath: dir.path("server.port")))
        // --check-config says the same without starting, for serve and worker.
        for command in ["serve", "worker"] {
            let checked = try run(try dsmoptExecutable(), [command, "--data", dir.url.path, "--check-config"], timeout: 30)
            #expect(checked.status == 2 && checked.stderr.contains("unknown setting 'maxUploadByte'"), "\(command): exit \(checked.status): \(checked.stderr)")
        }
    }

    /// `--check-config` on a valid file prints the settings in force (flags over environment over file, a
    /// store's password hidden) and the presets, and creates nothing; a preset file broken in the data folder
    /// is refused as a start would.
    @Test func checkConfigPrintsTheSettingsInForceAndWritesNothing() throws {
        let dir = try TemporaryFolder()
        try #"{"callbackAttempts": 3, "port": 9000, "store": "postgres://dsm:pw-not-shown@db.example.org:5432/dsmopt", "smtpURL": "smtp+starttls://dsm:mail-pw-not-shown@mail.example.org"}"#
            .write(toFile: dir.path("dsmopt.json"), atomically: true, encoding: .utf8)
        let r = try run(try dsmoptExecutable(), ["serve", "--data", dir.url.path, "--check-config", "--port", "9100"], timeout: 30)
        #expect(r.status == 0, "exit \(r.status): \(r.stderr)")
        let shown = try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any], "\(r.stdout)")
        let settings = try #require(shown["settings"] as? [String: Any])
        #expect(settings["callbackAttempts"] as? Int == 3 && settings["port"] as? Int == 9100 && settings["workers"] as? Int == 1, "\(settings)")
        #expect(settings["store"] as? String == "postgres://dsm:hidden@db.example.org:5432/dsmopt" && !r.stdout.contains("pw-not-shown"), "\(String(describing: settings["store"]))")
        #expect(settings["smtpURL"] as? String == "smtp+starttls://dsm:hidden@mail.example.org", "\(String(describing: settings["smtpURL"]))")
        #expect((shown["presets"] as? [String] ?? []).contains("default"), "\(String(describing: shown["presets"]))")
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.url.path) == ["dsmopt.json"], "nothing created beside the file")
        // A data folder whose presets hold a broken file.
        try FileManager.default.createDirectory(atPath: dir.path("presets"), withIntermediateDirectories: true)
        try #"{"name": "urban", "description": "x", "windw": 5}"#.write(toFile: dir.path("presets/urban.json"), atomically: true, encoding: .utf8)
        let broken = try run(try dsmoptExecutable(), ["worker", "--data", dir.url.path, "--check-config"], timeout: 30)
        #expect(broken.status == 2 && broken.stderr.contains("urban.json: invalid preset: unknown field(s) windw"), "exit \(broken.status): \(broken.stderr)")
    }
}
