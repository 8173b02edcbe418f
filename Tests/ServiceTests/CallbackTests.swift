import Foundation
import JobService
import TestSupport
import Testing

/// OGC API – Processes callbacks (`subscriber`), end to end: a daemon POSTs a job's outcome to a receiver (a
/// small HTTP server on loopback, allowed by the operator's `callbackAllowedHosts`).
@Suite(.serialized) struct CallbackTests {
    /// Starts the receiver: every POST is recorded (path, headers, body) in `log`, one JSON line each, with
    /// whether its Standard Webhooks signature checks out (Python's own HMAC) under the secret in the file
    /// `secret` at that time; `/flaky` answers 503 the first time and 204 after, `/down` always 500, anything
    /// else 200.
    static func receiver(port: Int, log: String, secret: String) throws -> Process {
        try pythonServer("""
            import base64, hashlib, hmac, http.server, json, sys, threading
            def verified(h, body):
                try:
                    key = base64.b64decode(open(sys.argv[2]).read().strip().removeprefix("whsec_"))
                except OSError:
                    return None
                signed = (h.get("webhook-id", "") + "." + h.get("webhook-timestamp", "") + ".").encode() + body
                mac = "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
                return any(hmac.compare_digest(mac, s) for s in h.get("webhook-signature", "").split(" "))
            seen = {}
            lock = threading.Lock()
            class H(http.server.BaseHTTPRequestHandler):
                def do_POST(self):
                    body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                    with lock:
                        n = seen.get(self.path, 0) + 1
                        seen[self.path] = n
                        with open(sys.argv[1], "a") as f:
                            f.write(json.dumps({"path": self.path, "link": self.headers.get("Link"), "type": self.headers.get("Content-Type"),
                                                "id": self.headers.get("webhook-id"), "timestamp": self.headers.get("webhook-timestamp"),
                                                "signature": self.headers.get("webhook-signature"),
                                                "verified": verified(self.headers, body), "body": body.decode()}) + "\\n")
                    code = 500 if self.path == "/down" else (503 if n == 1 else 204) if self.path.startswith("/flaky") else 200
                    self.send_response(code); self.send_header("Content-Length", "0"); self.end_headers()
                def log_message(self, *a): pass
            http.server.ThreadingHTTPServer(("127.0.0.1", \(port)), H).serve_forever()
            """, arguments: [log, secret])
    }

    /// A successful job's results document reaches its successUri, retried after the receiver's 503 (the same
    /// document GET /jobs/{id}/results gives, with a Link to the job); a dismissed job's status reaches its
    /// failedUri, and a receiver that keeps failing is given up after `callbackAttempts`, the reason on the job.
    @Test func outcomesArePostedToTheSubscriber() async throws {
        let img1 = try TestData.path("pleiades/reunion-pair/img_01.tif"), img2 = try TestData.path("pleiades/reunion-pair/img_02.tif")
        let port = try ReverseProxy.freeLoopbackPort()
        let logs = try TemporaryFolder()
        let log = logs.path("received.jsonl")
        let secretFile = logs.path("secret")
        let web = try Self.receiver(port: port, log: log, secret: secretFile)
        defer { stopServer(web) }
        try await Task.sleep(nanoseconds: 800_000_000)
        let s = try ServerProcess(workers: 1, config: #"{"callbackAllowedHosts": ["127.0.0.1"], "callbackRetrySeconds": 1, "callbackAttempts": 3}"#)
        let token = try s.user("carla")
        // The receiver knows the user's signing secret (created on first use, the same on every GET).
        let shown = try await http("GET", "\(s.base)/me/callback-secret", token: token)
        let secret = try #require(shown.json?["secret"] as? String, "\(shown.text)")
        #expect(shown.status == 200 && secret.hasPrefix("whsec_"))
        #expect(try await http("GET", "\(s.base)/me/callback-secret", token: token).json?["secret"] as? String == secret)
        try secret.write(toFile: secretFile, atomically: true, encoding: .utf8)
        let u1 = try await upload(s, token: token, path: img1, name: "img_01.tif")
        let u2 = try await upload(s, token: token, path: img2, name: "img_02.tif")
        let receiver = "http://127.0.0.1:\(port)"
        let inputs: [String: Any] = ["images": [["upload": u1], ["upload": u2]], "parameters": ["roi": [350, 350, 300, 300], "resolution": 1.0, "orthos": false]]

        // Refused at submission, each with its field: progress callbacks, another scheme, credentials, an
        // internal address or this machine not on the allow-list, an unknown field, nothing to call.
        for (subscriber, field) in [(["inProgressUri": "\(receiver)/p"], "subscriber.inProgressUri"), (["successUri": "ftp://example.org/x"], "subscriber.successUri"),
                                    (["failedUri": "http://u:p@example.org/"], "subscriber.failedUri"), (["successUri": "http://10.1.2.3/hook"], "subscriber.successUri"),
                                    (["failedUri": "http://localhost:\(port)/"], "subscriber.failedUri"), (["successUri": "http://[::1]:\(port)/"], "subscriber.successUri"),
                                    (["onSuccess": "\(receiver)/"], "subscriber.onSuccess"), ([:], "subscriber")] as [([String: String], String)] {
            let r = try await http("POST", "\(s.base)/processes/dsm-opt/execution", token: token, body: json(["inputs": inputs, "subscriber": subscriber]))
            let fields = ((r.json?["errors"] as? [[String: Any]]) ?? []).compactMap { $0["field"] as? String }
            #expect(r.status == 422 && fields == [field], "\(subscriber): \(r.text)")
        }
        #expect(jsonLines(log).isEmpty)

        // Success, through the standard execute request: delivered at the second attempt.
        let r = try await http("POST", "\(s.base)/processes/dsm-opt/execution", token: token,
                               body: json(["inputs": inputs, "subscriber": ["successUri": "\(receiver)/flaky?tag=a", "failedUri": "\(receiver)/down"]]))
        #expect(r.status == 201, "\(r.text)")
        let id = try #require(r.json?["jobID"] as? String)
        let accepted = try #require(r.json?["callback"] as? [String: Any])
        #expect(accepted["state"] as? String == "pending" && accepted["successUri"] as? String == "\(receiver)/flaky?tag=a", "\(accepted)")
        let j = try await waitFor(s, token: token, job: id, states: ["successful", "failed"])
        #expect(j["status"] as? String == "successful", "\(j)")
        let delivered = try await deliverySettled(.callback, s, token: token, job: id)
        #expect(delivered["state"] as? String == "delivered" && delivered["attempts"] as? Int == 2 && delivered["error"] == nil, "\(delivered)")
        let posts = jsonLines(log).filter { ($0["path"] as? String)?.hasPrefix("/flaky") == true }
        #expect(posts.count == 2 && posts.allSatisfy { $0["path"] as? String == "/flaky?tag=a" && $0["type"] as? String == "application/json" }, "\(posts)")
        let results = try await http("GET", "\(s.base)/jobs/\(id)/results", token: token)
        let sent = try #require(posts.last?["body"] as? String)
        #expect(results.status == 200 && sent == results.text, "POSTed: \(sent.prefix(300)); GET: \(results.text.prefix(300))")
        #expect(posts.last?["link"] as? String == "<\(s.base)/jobs/\(id)>; rel=\"status\"", "\(String(describing: posts.last?["link"]))")
        // Signed: the job's id as webhook-id in both attempts (the receiver's key to deduplicate), a current
        // timestamp, a signature the receiver's own HMAC accepts.
        #expect(posts.allSatisfy { $0["id"] as? String == id && $0["verified"] as? Bool == true }, "\(posts.map { [$0["id"], $0["verified"]] })")
        let stamped = Double(posts.last?["timestamp"] as? String ?? "") ?? 0
        #expect(abs(stamped - Date().timeIntervalSince1970) < 120, "webhook-timestamp \(stamped)")

        // Before a renewal, one signature and no previous secret.
        #expect(posts.allSatisfy { ($0["signature"] as? String ?? "").split(separator: " ").count == 1 } && shown.json?["previousSecretSignsUntil"] == nil)
        // A new secret signs what is sent from now on; for a day (callbackSecretGraceSeconds) the replaced one
        // signs it too, so that receivers can move over without missing a callback.
        let renewed = try await http("POST", "\(s.base)/me/callback-secret", token: token)
        let secret2 = try #require(renewed.json?["secret"] as? String, "\(renewed.text)")
        #expect(renewed.status == 201 && secret2 != secret)
        let graceEnd = try #require((renewed.json?["previousSecretSignsUntil"] as? String).flatMap { ISO8601DateFormatter().date(from: $0) }, "\(renewed.text)")
        #expect(abs(graceEnd.timeIntervalSinceNow - 86_400) < 120, "\(graceEnd)")
        let shownAfter = try await http("GET", "\(s.base)/me/callback-secret", token: token).json ?? [:]
        #expect(shownAfter["secret"] as? String == secret2 && shownAfter["previousSecretSignsUntil"] as? String == renewed.json?["previousSecretSignsUntil"] as? String, "\(shownAfter)")
        try secret2.write(toFile: secretFile, atomically: true, encoding: .utf8)
        let first = try #require(posts.last)
        let signed = (id: try #require(first["id"] as? String), at: Int(try #require(first["timestamp"] as? String)) ?? 0, body: Data(sent.utf8))
        #expect(try CallbackSignature.signature(secret: secret, id: signed.id, timestamp: signed.at, body: signed.body) == first["signature"] as? String)
        #expect(try CallbackSignature.signature(secret: secret2, id: signed.id, timestamp: signed.at, body: signed.body) != first["signature"] as? String)
        #expect(jsonLines(log).allSatisfy { $0["path"] as? String != "/down" }, "a successful job calls its successUri only")

        // Dismissed (cancelled by its owner): its status goes to failedUri, which keeps answering 500 and is
        // given up after 3 attempts.
        let d = try await http("POST", "\(s.base)/processes/dsm-opt/execution", token: token,
                               body: json(["inputs": inputs, "subscriber": ["failedUri": "\(receiver)/down"]]))
        let did = try #require(d.json?["jobID"] as? String, "\(d.text)")
        let cancelled = try await http("DELETE", "\(s.base)/jobs/\(did)", token: token)
        #expect([200, 202].contains(cancelled.status), "\(cancelled.text)")
        _ = try await waitFor(s, token: token, job: did, states: ["dismissed"])
        let given = try await deliverySettled(.callback, s, token: token, job: did)
        #expect(given["state"] as? String == "failed" && given["attempts"] as? Int == 3, "\(given)")
        #expect((given["error"] as? String ?? "").contains("answered 500") && (given["error"] as? String ?? "").contains("given up"), "\(given)")
        let down = jsonLines(log).filter { $0["path"] as? String == "/down" }
        #expect(down.count == 3, "\(down.count) POSTs to /down")
        #expect(down.allSatisfy { $0["id"] as? String == did && $0["verified"] as? Bool == true }, "\(down.map { [$0["id"], $0["verified"]] })")
        // Each carries two signatures: the new secret's (which the receiver checked) and the replaced one's.
        for post in down {
            let parts = (post["signature"] as? String ?? "").split(separator: " ").map(String.init)
            let old = try CallbackSignature.signature(secret: secret, id: did, timestamp: Int(post["timestamp"] as? String ?? "") ?? 0, body: Data((post["body"] as? String ?? "").utf8))
            #expect(parts.count == 2 && parts.contains(old), "\(parts)")
        }
        let status = try #require(down.first?["body"] as? String)
        let statusDoc = try #require(try JSONSerialization.jsonObject(with: Data(status.utf8)) as? [String: Any])
        #expect(statusDoc["jobID"] as? String == did && statusDoc["status"] as? String == "dismissed", "\(status.prefix(300))")

        // A host name that resolves to an internal address passes the submission (no DNS query there) and is
        // refused when sending: "127.1" is not an address written out, but resolves to 127.0.0.1, which is on
        // the allow-list only written that way.
        let sneaky = try await http("POST", "\(s.base)/processes/dsm-opt/execution", token: token,
                                    body: json(["inputs": inputs, "subscriber": ["failedUri": "http://127.1:\(port)/sneaky"]]))
        let sid = try #require(sneaky.json?["jobID"] as? String, "\(sneaky.text)")
        _ = try await http("DELETE", "\(s.base)/jobs/\(sid)", token: token)
        _ = try await waitFor(s, token: token, job: sid, states: ["dismissed"])
        let refused = try await deliverySettled(.callback, s, token: token, job: sid)
        #expect(refused["state"] as? String == "failed" && refused["attempts"] as? Int == 1
                && (refused["error"] as? String ?? "").contains("resolves to 127.0.0.1, an internal address"), "\(refused)")

        // The other process, dsm-difference (flat form): its results document, signed, to its successUri.
        let scenes = try TemporaryFolder()
        try writeChangePair(to: scenes.path("s"), size: 400, flowCentre: [200, 220], flowAxes: [90, 40])
        let da = try await upload(s, token: token, path: scenes.path("s/dsm_a.tif"), name: "dsm_2019.tif")
        let db = try await upload(s, token: token, path: scenes.path("s/dsm_b.tif"), name: "dsm_2021.tif")
        let diff = try await http("POST", "\(s.base)/processes/dsm-difference/execution", token: token,
                                  body: json(["dsms": [["upload": da], ["upload": db]], "subscriber": ["successUri": "\(receiver)/diff"]]))
        let fid = try #require(diff.json?["jobID"] as? String, "\(diff.text)")
        let fj = try await waitFor(s, token: token, job: fid, states: ["successful", "failed"])
        #expect(fj["status"] as? String == "successful", "\(fj)")
        let fdelivered = try await deliverySettled(.callback, s, token: token, job: fid)
        #expect(fdelivered["state"] as? String == "delivered" && fdelivered["attempts"] as? Int == 1, "\(fdelivered)")
        let fposts = jsonLines(log).filter { $0["path"] as? String == "/diff" }
        let fresults = try await http("GET", "\(s.base)/jobs/\(fid)/results", token: token)
        #expect(fposts.count == 1 && fposts.first?["body"] as? String == fresults.text && fresults.text.contains("difference_map"), "\(fposts.count): \(fresults.text.prefix(200))")
        #expect(fposts.first?["id"] as? String == fid && fposts.first?["verified"] as? Bool == true, "\(fposts)")

        // A job without a subscriber has no callback, and nothing more was sent.
        let plain = try await http("POST", "\(s.base)/processes/dsm-opt/execution", token: token, body: json(["inputs": inputs]))
        #expect(plain.status == 201 && plain.json?["callback"] == nil, "\(plain.text)")
        let pid = try #require(plain.json?["jobID"] as? String)
        _ = try await http("DELETE", "\(s.base)/jobs/\(pid)", token: token)
        _ = try await waitFor(s, token: token, job: pid, states: ["dismissed"])
        try await Task.sleep(nanoseconds: 1_500_000_000)
        #expect(jsonLines(log).count == 6)
    }

    /// The signature is the Standard Webhooks specification's (its published test vector), and a secret that
    /// is not a `whsec_` key is refused.
    @Test func signaturesFollowStandardWebhooks() throws {
        let body = Data(#"{"test": 2432232314}"#.utf8)
        #expect(try CallbackSignature.signature(secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", id: "msg_p5jXN8AQM9LWM0D4loKWxJek",
                                                timestamp: 1614265330, body: body) == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=")
        #expect(try CallbackSignature.signature(secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", id: "msg_p5jXN8AQM9LWM0D4loKWxJek",
                                                timestamp: 1614265331, body: body) != "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=")
        #expect(throws: (any Error).self) { try CallbackSignature.signature(secret: "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", id: "x", timestamp: 0, body: body) }
        #expect(throws: (any Error).self) { try CallbackSignature.signature(secret: "whsec_%%%", id: "x", timestamp: 0, body: body) }
    }
}
