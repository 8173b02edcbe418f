import DSMPipeline
import Foundation
import TestSupport
import Testing

/// The source commit a manifest records is read from the checkout's `.git` without a `git` process; `git`
/// itself says what it should be.
@Suite struct ProvenanceTests {
    func git(_ dir: String, _ args: String...) throws -> String {
        let r = try run("/usr/bin/git", ["-C", dir, "-c", "user.name=t", "-c", "user.email=t@example.org"] + args)
        #expect(r.status == 0, "git \(args): \(r.stderr)")
        return r.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    @Test func headCommitMatchesGit() throws {
        let tmp = try TemporaryFolder()
        let repo = tmp.path("repo"), root = URL(fileURLWithPath: repo)
        try FileManager.default.createDirectory(atPath: repo, withIntermediateDirectories: true)
        _ = try git(repo, "init", "-q", "-b", "main")
        #expect(Provenance.Software.headCommit(ofCheckout: root) == nil, "no commit yet")
        try "a".write(toFile: tmp.path("repo/a.txt"), atomically: true, encoding: .utf8)
        _ = try git(repo, "add", "a.txt")
        _ = try git(repo, "commit", "-q", "-m", "first")
        let first = try git(repo, "rev-parse", "HEAD")
        #expect(Provenance.Software.headCommit(ofCheckout: root) == first, "loose ref")
        try "b".write(toFile: tmp.path("repo/a.txt"), atomically: true, encoding: .utf8)
        _ = try git(repo, "commit", "-q", "-am", "second")
        _ = try git(repo, "pack-refs", "--all")
        let second = try git(repo, "rev-parse", "HEAD")
        #expect(second != first && !FileManager.default.fileExists(atPath: tmp.path("repo/.git/refs/heads/main")))
        #expect(Provenance.Software.headCommit(ofCheckout: root) == second, "packed ref")
        _ = try git(repo, "checkout", "-q", "--detach", first)
        #expect(Provenance.Software.headCommit(ofCheckout: root) == first, "detached HEAD")
        // A worktree: `.git` is a file naming its git directory; the branch's ref lives in the shared one.
        _ = try git(repo, "checkout", "-q", "main")
        _ = try git(repo, "worktree", "add", "-q", "-b", "side", tmp.path("side"))
        #expect(Provenance.Software.headCommit(ofCheckout: URL(fileURLWithPath: tmp.path("side"))) == second, "worktree")
        #expect(Provenance.Software.headCommit(ofCheckout: URL(fileURLWithPath: tmp.path("nowhere"))) == nil)
    }
}
