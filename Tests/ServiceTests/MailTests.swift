import Foundation
import JobService
import TestSupport
import Testing

/// Mail to a job's owner when the job ends, end to end: a daemon hands it to a real SMTP server (aiosmtpd,
/// PyPI) over STARTTLS with AUTH PLAIN, its certificate from an authority the operator names (`smtpCAFile`);
/// the server parses each message with Python's email package and records what it read.
@Suite(.serialized) struct MailTests {
    static var python: String {
        ProcessInfo.processInfo.environment["DSMOPT_TEST_PYTHON"] ?? TestData.packageRoot.appendingPathComponent(".build/portal-venv/bin/python").path
    }

    /// An SMTP server on `port` (`starttls`: STARTTLS required before AUTH; `tls`: TLS from the first byte),
    /// user `u`, password `p@ss`. Recipients `refused@…` are refused for good (550), `flaky@…` once for now
    /// (451). Every message accepted is appended to `log` as a JSON line: envelope, TLS, login, and the
    /// message as Python's email parser reads it (headers decoded, the text part).
    static func server(port: Int, mode: String, log: String, cert: String, key: String) throws -> Process {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: python)
        p.arguments = ["-c", """
            import email, email.policy, json, ssl, sys, threading
            from aiosmtpd.controller import Controller
            from aiosmtpd.smtp import AuthResult, LoginPassword
            port, mode, log, cert, key = sys.argv[1:6]
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ctx.load_cert_chain(cert, key)
            seen = {}
            lock = threading.Lock()
            class Handler:
                async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
                    if address.startswith("refused@"):
                        return "550 5.1.1 no such mailbox"
                    with lock:
                        seen[address] = seen.get(address, 0) + 1
                        if address.startswith("flaky@") and seen[address] % 2 == 1:
                            return "451 4.3.0 try again later"
                    envelope.rcpt_tos.append(address)
                    return "250 OK"
                async def handle_DATA(self, server, session, envelope):
                    m = email.message_from_bytes(envelope.content, policy=email.policy.default)
                    record = {"from": envelope.mail_from, "to": envelope.rcpt_tos, "tls": session.ssl is not None,
                              "login": session.login_data.decode() if session.login_data else None,
                              "subject": str(m["Subject"]), "headerFrom": str(m["From"]), "headerTo": str(m["To"]),
                              "messageId": str(m["Message-ID"]), "date": str(m["Date"]), "defects": len(m.defects),
                              "body": m.get_content()}
                    with lock, open(log, "a") as f:
                        f.write(json.dumps(record) + "\\n")
                    return "250 2.0.0 accepted"
            def authenticate(server, session, envelope, mechanism, auth_data):
                ok = isinstance(auth_data, LoginPassword) and auth_data.login == b"u" and auth_data.password == b"p@ss"
                return AuthResult(success=ok, handled=False, auth_data=auth_data)
            common = dict(authenticator=authenticate, auth_required=True)
            if mode == "starttls":
                c = Controller(Handler(), hostname="127.0.0.1", port=int(port), tls_context=ctx, require_starttls=True, auth_require_tls=True, **common)
            else:
                # (aiosmtpd counts only STARTTLS as TLS for auth_require_tls.)
                c = Controller(Handler(), hostname="127.0.0.1", port=int(port), ssl_context=ctx, auth_require_tls=False, **common)
            c.start()
            print("ready", flush=True)
            threading.Event().wait()
            """, String(port), mode, log, cert, key]
        let out = Pipe()
        p.standardOutput = out
        p.standardError = FileHandle.nullDevice
        try p.run()
        // Controller.start() returns once the server answers.
        let ready = out.fileHandleForReading.availableData
        guard String(decoding: ready, as: UTF8.self).contains("ready") else {
            stopServer(p)
            throw ServerError(message: "the SMTP server did not start (aiosmtpd in \(python)? run scripts/setup.sh --test)")
        }
        return p
    }

    /// A self-signed certificate for 127.0.0.1 and localhost, and its key, in `tmp` (the servers' and the
    /// authority the daemon is given).
    static func certificate(in tmp: TemporaryFolder) throws -> (cert: String, key: String) {
        let cert = tmp.path("cert.pem"), key = tmp.path("key.pem")
        let made = try run("/usr/bin/openssl", ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert, "-days", "2",
                                                 "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"])
        try #require(made.status == 0, "openssl: \(made.stderr)")
        return (cert, key)
    }

    @Test func ownersAreMailedWhenTheirJobsEnd() async throws {
        let tmp = try TemporaryFolder()
        let (cert, key) = try Self.certificate(in: tmp), log = tmp.path("mail.jsonl")
        let port = try ReverseProxy.freeLoopbackPort(), tlsPort = try ReverseProxy.freeLoopbackPort()
        let smtp = try Self.server(port: port, mode: "starttls", log: log, cert: cert, key: key)
        defer { stopServer(smtp) }
        let smtps = try Self.server(port: tlsPort, mode: "tls", log: log, cert: cert, key: key)
        defer { stopServer(smtps) }
        let s = try ServerProcess(workers: 1, config: """
            {"smtpURL": "smtp+starttls://u:p%40ss@127.0.0.1:\(port)", "smtpCAFile": "\(cert)", "mailFrom": "dsm@example.org",
             "mailRetrySeconds": 1, "mailAttempts": 3, "publicURL": "https://dsm.example.org/dsmopt"}
            """)
        let token = try s.user("carla")

        // The address: none at first; a bad one refused with the reason; then set and shown.
        let me = try await http("GET", "\(s.base)/me", token: token).json ?? [:]
        #expect(me["email"] == nil && me["mailConfigured"] as? Bool == true, "\(me)")
        for bad in [#"{"email": "carla at example.org"}"#, #"{"email": "carla@example.org\r\nBcc: x@evil.org"}"#, #"{"email": "carla@example.org", "x": 1}"#, #"{"email": 3}"#] {
            let r = try await http("PUT", "\(s.base)/me/email", token: token, body: Data(bad.utf8))
            #expect(r.status == 422, "\(bad): \(r.status) \(r.text)")
        }
        let set = try await http("PUT", "\(s.base)/me/email", token: token, body: json(["email": "carla@example.org"]))
        #expect(set.status == 200 && set.json?["email"] as? String == "carla@example.org", "\(set.text)")
        #expect(try await http("GET", "\(s.base)/me", token: token).json?["email"] as? String == "carla@example.org")

        // Difference jobs: quick, and one that fails (DSMs that do not overlap).
        try writeChangePair(to: tmp.path("s"), size: 300, flowCentre: [150, 160], flowAxes: [60, 30])
        let far = tmp.path("far.tif")
        #expect(try run("/usr/bin/gdal_translate", ["-q", "-a_ullr", "400000", "7600000", "400660", "7599340", tmp.path("s/dsm_b.tif"), far]).status == 0)
        let da = try await upload(s, token: token, path: tmp.path("s/dsm_a.tif"), name: "dsm_2019.tif")
        let db = try await upload(s, token: token, path: tmp.path("s/dsm_b.tif"), name: "dsm_2021.tif")
        let df = try await upload(s, token: token, path: far, name: "elsewhere.tif")
        func submit(_ b: String, name: String) async throws -> String {
            let r = try await http("POST", "\(s.base)/processes/dsm-difference/execution", token: token,
                                   body: json(["dsms": [["upload": da], ["upload": b]], "name": name]))
            #expect(r.status == 201, "\(r.text)")
            return try #require(r.json?["jobID"] as? String, "\(r.text)")
        }

        // Success: one mail, over STARTTLS, authenticated, with the results' links under publicURL and the purge date.
        let name = "Piton lava 2019–2021 ✓"
        let ok = try await submit(db, name: name)
        #expect((try await http("GET", "\(s.base)/jobs/\(ok)", token: token).json?["mail"] as? [String: Any])?["state"] as? String == "pending")
        let okJob = try await waitFor(s, token: token, job: ok, states: ["successful", "failed"])
        #expect(okJob["status"] as? String == "successful", "\(okJob)")
        let delivered = try await deliverySettled(.mail, s, token: token, job: ok)
        #expect(delivered["state"] as? String == "delivered" && delivered["attempts"] as? Int == 1, "\(delivered)")
        let first = try #require(jsonLines(log).first)
        #expect(first["from"] as? String == "dsm@example.org" && first["to"] as? [String] == ["carla@example.org"], "\(first)")
        #expect(first["tls"] as? Bool == true && first["login"] as? String == "u" && first["defects"] as? Int == 0, "\(first)")
        #expect(first["subject"] as? String == "[dsmopt] \(name): finished", "\(first["subject"] ?? "")")
        #expect(first["headerTo"] as? String == "carla@example.org" && (first["headerFrom"] as? String ?? "").contains("dsm@example.org"), "\(first)")
        #expect((first["messageId"] as? String ?? "").contains(ok), "\(first["messageId"] ?? "")")
        let body = first["body"] as? String ?? ""
        let purge = try #require(okJob["purgeDate"] as? String)
        for part in ["Hello carla,", "finished successfully", "https://dsm.example.org/dsmopt/jobs/\(ok)/results/difference.tif",
                     "all of them in one zip: https://dsm.example.org/dsmopt/jobs/\(ok)/results.zip", "https://dsm.example.org/dsmopt/#/job/\(ok)", "kept until \(purge.prefix(10))"] {
            #expect(body.contains(part), "\(part) not in:\n\(body)")
        }

        // Failure: the reason and the log's link.
        let bad = try await submit(df, name: "elsewhere")
        _ = try await waitFor(s, token: token, job: bad, states: ["failed", "successful"])
        #expect(try await deliverySettled(.mail, s, token: token, job: bad)["state"] as? String == "delivered")
        let second = try #require(jsonLines(log).last)
        let text = second["body"] as? String ?? ""
        #expect(second["subject"] as? String == "[dsmopt] elsewhere: failed", "\(second["subject"] ?? "")")
        #expect(text.contains("Reason:") && text.contains("do not overlap") && text.contains("/jobs/\(bad)/logs"), "\(text)")

        // Dismissed by its owner: no mail.
        let gone = try await submit(db, name: "dismissed")
        _ = try await http("DELETE", "\(s.base)/jobs/\(gone)", token: token)
        let ended = try await waitFor(s, token: token, job: gone, states: ["dismissed", "successful"])
        #expect(ended["status"] as? String == "dismissed", "\(ended)")
        let skipped = try await deliverySettled(.mail, s, token: token, job: gone)
        #expect(skipped["state"] as? String == "skipped", "\(skipped)")

        // A server that says "later" (451) is tried again; one that refuses the mailbox for good (550) is not.
        _ = try await http("PUT", "\(s.base)/me/email", token: token, body: json(["email": "flaky@example.org"]))
        let later = try await submit(db, name: "flaky")
        _ = try await waitFor(s, token: token, job: later, states: ["successful", "failed"])
        let retried = try await deliverySettled(.mail, s, token: token, job: later)
        #expect(retried["state"] as? String == "delivered" && retried["attempts"] as? Int == 2, "\(retried)")
        _ = try await http("PUT", "\(s.base)/me/email", token: token, body: json(["email": "refused@example.org"]))
        let never = try await submit(db, name: "refused")
        _ = try await waitFor(s, token: token, job: never, states: ["successful", "failed"])
        let refused = try await deliverySettled(.mail, s, token: token, job: never)
        #expect(refused["state"] as? String == "failed" && refused["attempts"] as? Int == 1 && (refused["error"] as? String ?? "").contains("550"), "\(refused)")

        // Turned off for one job: said so on the job, and nothing sent; a value that is not a boolean is refused.
        let off = try await http("POST", "\(s.base)/processes/dsm-difference/execution", token: token,
                                 body: json(["dsms": [["upload": da], ["upload": db]], "name": "no mail", "mail": false]))
        #expect(off.status == 201, "\(off.text)")
        let offID = try #require(off.json?["jobID"] as? String)
        _ = try await waitFor(s, token: token, job: offID, states: ["successful", "failed"])
        let notSent = try await deliverySettled(.mail, s, token: token, job: offID)
        #expect(notSent["state"] as? String == "skipped" && notSent["error"] as? String == "turned off for this job" && notSent["attempts"] as? Int == 0, "\(notSent)")
        let notBool = try await http("POST", "\(s.base)/processes/dsm-difference/execution", token: token,
                                     body: json(["dsms": [["upload": da], ["upload": db]], "mail": "no"]))
        #expect(notBool.status == 422 && notBool.text.contains("\"mail\"") && notBool.text.contains("true or false"), "\(notBool.text)")

        // Without an address, a job has no mail, and one that asks for it is refused.
        #expect(try await http("DELETE", "\(s.base)/me/email", token: token).status == 204)
        let wanted = try await http("POST", "\(s.base)/processes/dsm-difference/execution", token: token,
                                    body: json(["dsms": [["upload": da], ["upload": db]], "mail": true]))
        #expect(wanted.status == 422 && wanted.text.contains("no address to mail"), "\(wanted.text)")
        let quiet = try await http("POST", "\(s.base)/processes/dsm-difference/execution", token: token, body: json(["dsms": [["upload": da], ["upload": db]]]))
        #expect(quiet.status == 201 && quiet.json?["mail"] == nil, "\(quiet.text)")
        let mailed = jsonLines(log).map { $0["to"] as? [String] ?? [] }
        #expect(mailed == [["carla@example.org"], ["carla@example.org"], ["flaky@example.org"]], "\(mailed)")
        // An operator sees the outbox in /metrics: three delivered, one refused for good, two skipped (dismissed,
        // turned off).
        let ops = try s.user("ops", role: "operator")
        let metrics = try await http("GET", "\(s.base)/metrics", token: ops).text
        for line in ["dsmopt_deliveries{channel=\"mail\",state=\"delivered\"} 3", "dsmopt_deliveries{channel=\"mail\",state=\"failed\"} 1",
                     "dsmopt_deliveries{channel=\"mail\",state=\"skipped\"} 2", "dsmopt_deliveries{channel=\"mail\",state=\"pending\"} 0",
                     "dsmopt_deliveries{channel=\"callback\",state=\"delivered\"} 0"] {
            #expect(metrics.split(separator: "\n").contains(Substring(line)), "\(line) not in /metrics: \(metrics.prefix(1200))")
        }

        // The operator's check of the settings: a test mail through the TLS-from-the-start server, accepted
        // with the authority given, refused without it.
        let conf = tmp.path("smtps.json")
        try #"{"smtpURL": "smtps://u:p%40ss@127.0.0.1:\#(tlsPort)", "smtpCAFile": "\#(cert)", "mailFrom": "dsm@example.org"}"#.write(toFile: conf, atomically: true, encoding: .utf8)
        let sent = try run(try dsmoptExecutable(), ["admin", "--data", tmp.path("d"), "--config", conf, "test-mail", "ops@example.org"])
        #expect(sent.status == 0, "\(sent.stderr)")
        #expect(jsonLines(log).last?["to"] as? [String] == ["ops@example.org"] && jsonLines(log).last?["subject"] as? String == "[dsmopt] test mail")
        try #"{"smtpURL": "smtps://u:p%40ss@127.0.0.1:\#(tlsPort)"}"#.write(toFile: conf, atomically: true, encoding: .utf8)
        let untrusted = try run(try dsmoptExecutable(), ["admin", "--data", tmp.path("d"), "--config", conf, "test-mail", "ops@example.org"])
        #expect(untrusted.status == 1 && untrusted.stderr.contains("certificate is not trusted"), "\(untrusted.status): \(untrusted.stderr)")
        try #"{"smtpURL": "smtp://127.0.0.1:\#(port)", "mailFrom": "not an address"}"#.write(toFile: conf, atomically: true, encoding: .utf8)
        let wrong = try run(try dsmoptExecutable(), ["admin", "--data", tmp.path("d"), "--config", conf, "test-mail", "ops@example.org"])
        #expect(wrong.status == 2 && wrong.stderr.contains("mailFrom"), "\(wrong.status): \(wrong.stderr)")
    }

    /// A job's owner is reminded once, `purgeReminderSeconds` before its results are purged, with the date,
    /// the links and how to keep the products — her server says "later" to every other attempt, so the
    /// reminder, like the end mail, goes on the second; a job whose mail was turned off is not reminded.
    @Test func ownersAreRemindedBeforeThePurge() async throws {
        let tmp = try TemporaryFolder()
        let (cert, key) = try Self.certificate(in: tmp), log = tmp.path("mail.jsonl")
        let port = try ReverseProxy.freeLoopbackPort()
        let smtp = try Self.server(port: port, mode: "starttls", log: log, cert: cert, key: key)
        defer { stopServer(smtp) }
        // Results kept 24 s, the reminder 12 s before the purge.
        let s = try ServerProcess(workers: 1, config: """
            {"smtpURL": "smtp+starttls://u:p%40ss@127.0.0.1:\(port)", "smtpCAFile": "\(cert)", "mailFrom": "dsm@example.org",
             "retentionSeconds": 24, "purgeReminderSeconds": 12, "mailRetrySeconds": 1}
            """)
        let token = try s.user("rita")
        #expect(try await http("PUT", "\(s.base)/me/email", token: token, body: json(["email": "flaky@example.org"])).status == 200)
        try writeChangePair(to: tmp.path("s"), size: 300, flowCentre: [150, 160], flowAxes: [60, 30])
        let da = try await upload(s, token: token, path: tmp.path("s/dsm_a.tif"), name: "dsm_2019.tif")
        let db = try await upload(s, token: token, path: tmp.path("s/dsm_b.tif"), name: "dsm_2021.tif")
        var ids: [String] = []
        for (name, mail) in [("kept", true), ("quiet", false)] {
            let r = try await http("POST", "\(s.base)/processes/dsm-difference/execution", token: token,
                                   body: json(["dsms": [["upload": da], ["upload": db]], "name": name, "mail": mail]))
            ids.append(try #require(r.json?["jobID"] as? String, "\(r.status) \(r.text)"))
        }
        for id in ids { #expect(try await waitFor(s, token: token, job: id, states: ["successful", "failed"])["status"] as? String == "successful") }
        let kept = try await deliverySettled(.mail, s, token: token, job: ids[0])
        #expect(kept["state"] as? String == "delivered" && kept["attempts"] as? Int == 2, "\(kept)")
        let reminders = { jsonLines(log).filter { ($0["subject"] as? String ?? "").contains("results deleted on") } }
        for _ in 0..<60 where reminders().isEmpty {
            try await Task.sleep(nanoseconds: 500_000_000)
        }
        let job = try await http("GET", "\(s.base)/jobs/\(ids[0])", token: token).json ?? [:]
        let first = try #require(reminders().first, "no reminder within 30 s: \(jsonLines(log).map { $0["subject"] ?? "" })")
        func date(_ key: String) -> Date? { (job[key] as? String).flatMap { ISO8601DateFormatter().date(from: $0) } }
        func utc(_ d: Date, _ format: String) -> String {
            let f = DateFormatter()
            f.locale = Locale(identifier: "en_US_POSIX"); f.timeZone = TimeZone(identifier: "UTC"); f.dateFormat = format
            return f.string(from: d)
        }
        let purge = try #require(date("purgeDate"), "\(job)")
        let queued = try #require(date("purgeReminder"), "the job records the reminder: \(job)")
        // Queued once due (12 s before the purge), not before (the loop runs every second); sent on its second attempt.
        #expect(queued <= purge.addingTimeInterval(-10) && queued >= purge.addingTimeInterval(-13.5), "queued \(queued), purge \(purge)")
        let reminder = (job["reminder"] as? [String: Any]) ?? [:]
        #expect(reminder["state"] as? String == "delivered" && reminder["attempts"] as? Int == 2, "\(job)")
        #expect(first["to"] as? [String] == ["flaky@example.org"] && first["subject"] as? String == "[dsmopt] kept: results deleted on \(utc(purge, "yyyy-MM-dd"))",
                "\(first)")
        #expect((first["messageId"] as? String ?? "").contains("\(ids[0]).purge-reminder"), "\(first["messageId"] ?? "")")
        let body = first["body"] as? String ?? ""
        for part in ["Hello rita,", "will be deleted on \(utc(purge, "yyyy-MM-dd HH:mm 'UTC'"))", "(in 1", "POST \(s.base)/jobs/\(ids[0])/publish",
                     "\(s.base)/jobs/\(ids[0])/results/difference.tif", "\(s.base)/jobs/\(ids[0])/results.zip"] {
            #expect(body.contains(part), "\(part) not in:\n\(body)")
        }
        // Its links open without the token until the purge: the zip's is signed to expire then.
        let zipLink = try #require(body.firstMatch(of: /all of them in one zip: (\S+)\)/).map { String($0.1) }, "\(body)")
        #expect(zipLink.contains("&expires=\(Int64(purge.timeIntervalSince1970))&signature="), "\(zipLink), purge \(purge)")
        let zipped = try await http("GET", zipLink)
        #expect(zipped.status == 200 && zipped.headers["content-type"] == "application/zip", "\(zipped.status) \(zipped.text.prefix(300))")
        // After the purge: still one reminder, none about the job without mail; the end mails were the first job's only.
        while Date() < purge.addingTimeInterval(3) { try await Task.sleep(nanoseconds: 500_000_000) }
        #expect(reminders().count == 1, "\(reminders().map { $0["subject"] ?? "" })")
        #expect(jsonLines(log).map { $0["subject"] as? String ?? "" } == ["[dsmopt] kept: finished", first["subject"] as? String ?? ""], "\(jsonLines(log).map { $0["subject"] ?? "" })")
        let quiet = try await http("GET", "\(s.base)/jobs/\(ids[1])", token: token).json ?? [:]
        #expect(quiet["purgeReminder"] == nil && quiet["reminder"] == nil, "\(quiet)")
        // Operators count the attempts, and the reminders by state, in /metrics.
        let metrics = try await http("GET", "\(s.base)/metrics", token: try s.user("otto", role: "operator")).text
        for line in [#"dsmopt_purge_reminders_total{outcome="sent"} 1"#, #"dsmopt_purge_reminders_total{outcome="failed"} 1"#,
                     #"dsmopt_deliveries{channel="reminder",state="delivered"} 1"#, #"dsmopt_deliveries{channel="reminder",state="pending"} 0"#] {
            #expect(metrics.split(separator: "\n").contains(Substring(line)), "\(line) not in /metrics")
        }
    }
}
