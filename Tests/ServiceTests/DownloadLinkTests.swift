import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import JobService
import TestSupport
import Testing

/// Download links (`POST /jobs/{id}/download-links`): a job's results without a token until a date, voided with
/// the token that signed them, for that job only.
@Suite(.serialized) struct DownloadLinkTests {
    @Test func downloadLinksOpenOneJobsResultsUntilVoided() async throws {
        let s = try ServerProcess(workers: 1)
        let token = try s.user("alice")
        let img1 = try TestData.path("pleiades/reunion-pair/img_01.tif"), img2 = try TestData.path("pleiades/reunion-pair/img_02.tif")
        let u1 = try await upload(s, token: token, path: img1, name: "a.tif"), u2 = try await upload(s, token: token, path: img2, name: "b.tif")
        let created = try await http("POST", "\(s.base)/processes/dsm-opt/execution", token: token,
                                     body: json(["images": [["upload": u1], ["upload": u2]], "parameters": ["roi": [350, 350, 300, 300], "resolution": 1.0, "orthos": false]]))
        let id = try #require(created.json?["jobID"] as? String, "\(created.text)")
        let job = try await waitFor(s, token: token, job: id, states: ["successful", "failed"])
        #expect(job["status"] as? String == "successful", "\(job)")
        let me = try #require(try await http("GET", "\(s.base)/me", token: token).json?["id"] as? String)

        // Asked for without a body: a day, signed by alice.
        let asked = Date()
        let r = try await http("POST", "\(s.base)/jobs/\(id)/download-links", token: token)
        #expect(r.status == 201, "\(r.text)")
        let links = try #require(r.json)
        let query = try #require(links["query"] as? String)
        let expires = try #require(ISO8601DateFormatter().date(from: links["expires"] as? String ?? ""))
        #expect(abs(expires.timeIntervalSince(asked) - 86_400) < 120 && query.hasPrefix("user=\(me)&expires=") && query.contains("&signature="), "\(links)")
        let archive = try #require(links["archive"] as? String)
        #expect(archive == "\(s.base)/jobs/\(id)/results.zip?\(query)")
        let results = try #require(links["results"] as? [String: Any])
        let dsmHref = try #require((results["dsm"] as? [String: Any])?["href"] as? String)
        #expect(dsmHref == "\(s.base)/jobs/\(id)/results/dsm.tif?\(query)", "\(results)")

        // The zip's CRC index is written when the job ends, before any download asks for it: one entry per
        // file of the results document.
        let index = s.data.path("jobs/\(id)/attempt-1/out/.results-zip.json")
        let deadline = Date().addingTimeInterval(20)
        while !FileManager.default.fileExists(atPath: index) && Date() < deadline { try await Task.sleep(nanoseconds: 200_000_000) }
        let indexed = ((try? JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: index)))) as? [[String: Any]] ?? []).compactMap { $0["name"] as? String }
        let documentFiles = try #require(try await http("GET", "\(s.base)/jobs/\(id)/results", token: token).json).values
            .flatMap { ($0 as? [[String: Any]]) ?? [$0 as? [String: Any] ?? [:]] }.compactMap { ($0["href"] as? String)?.split(separator: "/").last.map(String.init) }
        #expect(!indexed.isEmpty && Set(indexed) == Set(documentFiles), "index \(indexed), results \(documentFiles)")
        let log = try await http("GET", "\(s.base)/jobs/\(id)/logs", token: token).text
        #expect(log.contains("results' zip index: \(indexed.count) files"), "\(log.suffix(400))")

        // Without a token: the zip and the DSM, the same bytes as with one; ranges and HEAD too.
        let zipped = try await http("GET", archive)
        #expect(zipped.status == 200 && zipped.headers["content-type"] == "application/zip", "\(zipped.status) \(zipped.text.prefix(300))")
        let zippedWithToken = try await http("GET", "\(s.base)/jobs/\(id)/results.zip", token: token).body
        #expect(zipped.body == zippedWithToken)
        let dsm = try await http("GET", dsmHref)
        let dsmWithToken = try await http("GET", "\(s.base)/jobs/\(id)/results/dsm.tif", token: token).body
        #expect(dsm.status == 200 && dsm.body == dsmWithToken && dsm.body.count > 1000)
        let part = try await http("GET", dsmHref, headers: ["Range": "bytes=100-199"])
        #expect(part.status == 206 && part.body == dsm.body[100..<200])
        #expect(try await http("HEAD", archive).status == 200)
        // The manifest read through the link hands the link on to each product.
        let manifest = try #require(try await http("GET", "\(s.base)/jobs/\(id)/results/manifest.json?\(query)").json)
        let hrefs = ((manifest["products"] as? [[String: Any]]) ?? []).compactMap { $0["href"] as? String }
        #expect(!hrefs.isEmpty && hrefs.allSatisfy { $0.hasSuffix("?\(query)") }, "\(hrefs)")

        // What a link does not open: other routes of the job, another job, an altered or incomplete link.
        #expect(try await http("GET", "\(s.base)/jobs/\(id)?\(query)").status == 401)
        #expect(try await http("GET", "\(s.base)/jobs/\(id)/results?\(query)").status == 401)
        // Another job's id: the first character changed (to "1" when it is "0", or the id would be this job's).
        let otherId = (id.first == "0" ? "1" : "0") + id.dropFirst()
        let other = try await http("GET", "\(s.base)/jobs/\(otherId)/results.zip?\(query)")
        #expect(other.status == 403 && other.text.contains("signature does not match"), "\(other.text)")
        let signature = String(query.split(separator: "=").last!)
        let flipped = String(signature.dropLast()) + (signature.last == "A" ? "B" : "A")
        #expect(try await http("GET", "\(s.base)/jobs/\(id)/results.zip?\(query.replacingOccurrences(of: signature, with: flipped))").status == 403)
        let later = try await http("GET", "\(s.base)/jobs/\(id)/results.zip?\(query.replacingOccurrences(of: "expires=", with: "expires=1"))")
        #expect(later.status == 403 && later.text.contains("signature does not match"), "a later expiry is an altered link: \(later.text)")
        let partial = try await http("GET", "\(s.base)/jobs/\(id)/results.zip?\(query.replacingOccurrences(of: "user=\(me)&", with: ""))")
        #expect(partial.status == 403 && partial.text.contains("incomplete: it has no user"), "\(partial.text)")
        let twice = try await http("GET", "\(s.base)/jobs/\(id)/results.zip?\(query)&user=\(me)")
        #expect(twice.status == 403 && twice.text.contains("user is given more than once"), "\(twice.text)")
        // A token given as well is what counts: a wrong one is refused, link or not.
        #expect(try await http("GET", archive, token: "wrong").status == 401)

        // Who may ask: the owner and operators; another user sees no such job. Durations are checked.
        let bob = try s.user("bob"), oscar = try s.user("oscar", role: "operator")
        #expect(try await http("POST", "\(s.base)/jobs/\(id)/download-links", token: bob).status == 404)
        let byOperator = try await http("POST", "\(s.base)/jobs/\(id)/download-links", token: oscar, body: json(["expiresIn": 3600]))
        let operatorArchive = try #require(byOperator.json?["archive"] as? String, "\(byOperator.text)")
        #expect(try await http("GET", operatorArchive).status == 200)
        for (bad, status) in [("{\"expiresIn\": 59}", 422), ("{\"expiresIn\": 2592001}", 422), ("{\"expiresIn\": true}", 422),
                              ("{\"expiresIn\": 3600.5}", 422), ("{\"expiresIn\": null}", 422), ("{\"expires\": 3600}", 422), ("[3600]", 400), ("soon", 400)] {
            let answer = try await http("POST", "\(s.base)/jobs/\(id)/download-links", token: token, body: Data(bad.utf8))
            #expect(answer.status == status && answer.text.contains("expiresIn"), "\(bad): \(answer.status) \(answer.text)")
        }
        // 30 days asked for a job kept 21: the link ends at the purge.
        let long = try #require(try await http("POST", "\(s.base)/jobs/\(id)/download-links", token: token, body: json(["expiresIn": 2_592_000])).json)
        let purge = try #require(ISO8601DateFormatter().date(from: job["purgeDate"] as? String ?? ""))
        let longExpiry = try #require(ISO8601DateFormatter().date(from: long["expires"] as? String ?? ""))
        #expect(abs(longExpiry.timeIntervalSince(purge)) < 1.5, "\(longExpiry) vs purge \(purge)")

        // Rotating the token voids the links it signed; links signed with the new one work.
        let rotated = try #require(try await http("POST", "\(s.base)/me/token", token: token).json?["token"] as? String)
        let voided = try await http("GET", archive)
        #expect(voided.status == 403 && voided.text.contains("rotated or revoked"), "\(voided.text)")
        #expect(try await http("GET", operatorArchive).status == 200, "the operator's own link stands")
        let fresh = try #require(try await http("POST", "\(s.base)/jobs/\(id)/download-links", token: rotated).json?["archive"] as? String)
        #expect(try await http("GET", fresh).status == 200)
        // Revoked by an admin: voided too.
        let admin = try s.user("ada", role: "admin")
        #expect(try await http("DELETE", "\(s.base)/admin/users/\(me)/token", token: admin).status == 204)
        #expect(try await http("GET", fresh).status == 403)
        // Deleted, the job's links find nothing.
        #expect(try await http("DELETE", "\(s.base)/jobs/\(id)", token: admin).status == 200)
        #expect(try await http("GET", operatorArchive).status == 404)
        #expect(try await http("GET", "\(s.base)/health").status == 200)
    }

    /// The signature and the expiry, without a server: what `verify` refuses, and when.
    @Test func aLinkExpiresAndBindsItsFields() throws {
        let now = Date(timeIntervalSince1970: 1_800_000_000)
        let link = DownloadLink(jobId: "job1", userId: "u1", expires: 1_800_000_060, tokenHash: "abc")
        try link.verify(tokenHash: "abc", now: now)
        #expect(throws: DownloadLink.Refusal.expired(link.expiryDate)) { try link.verify(tokenHash: "abc", now: now.addingTimeInterval(60)) }
        #expect(throws: DownloadLink.Refusal.badSignature) { try link.verify(tokenHash: "abd", now: now) }
        #expect(throws: DownloadLink.Refusal.badSignature) { try link.verify(tokenHash: nil, now: now) }
        for changed in [DownloadLink(jobId: "job2", userId: "u1", expires: link.expires, signature: link.signature),
                        DownloadLink(jobId: "job1", userId: "u2", expires: link.expires, signature: link.signature),
                        DownloadLink(jobId: "job1", userId: "u1", expires: link.expires + 1, signature: link.signature)] {
            #expect(throws: DownloadLink.Refusal.badSignature) { try changed.verify(tokenHash: "abc", now: now) }
        }
        // The query parses back to the same link.
        let fields = Dictionary(uniqueKeysWithValues: link.query.split(separator: "&").map { p in
            (String(p.split(separator: "=")[0]), String(p.split(separator: "=", maxSplits: 1)[1]))
        })
        #expect(try DownloadLink.parse(jobId: "job1", query: { fields[$0].map { [$0] } ?? [] }) == link)
        #expect(try DownloadLink.parse(jobId: "job1", query: { _ in [] }) == nil)
        #expect(throws: DownloadLink.Refusal.malformed("expires must be whole seconds since 1970")) {
            try DownloadLink.parse(jobId: "job1", query: { $0 == "expires" ? ["soon"] : ["x"] })
        }
        #expect(link.signature.count == 43 && !link.signature.contains(where: { "+/=".contains($0) }), "base64url: \(link.signature)")
    }
}
