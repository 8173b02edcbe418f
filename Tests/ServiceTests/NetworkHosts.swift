import Foundation
import TestSupport

/// Network namespaces standing for separate machines: each has its own network stack, its own host name and
/// one link to this host (a veth pair in 198.18.k.0/30, the RFC 2544 benchmarking range), through which its
/// processes reach the PostgreSQL store at 198.18.k.1 — they cannot use this host's loopback. Needs root and
/// `ip netns`; `make` returns nil (with the reason) where they are not available, and the caller falls back
/// to plain processes.
struct NetworkHost {
    let namespace: String
    let index: Int
    /// The veth end on this host (deleted with its peer when the namespace goes; by name if it never got there).
    let outerLink: String
    var hostAddress: String { "198.18.\(index).1" }

    static let ip = "/usr/sbin/ip"

    static func make(count: Int) -> (hosts: [NetworkHost]?, reason: String) {
        guard geteuid() == 0 else { return (nil, "not root") }
        guard FileManager.default.isExecutableFile(atPath: ip), FileManager.default.isExecutableFile(atPath: "/usr/bin/unshare") else {
            return (nil, "no \(ip) or unshare")
        }
        var hosts: [NetworkHost] = []
        let tag = String(getpid() % 100_000)
        for k in 1...count {
            let outer = "dv\(tag)h\(k)", inner = "dv\(tag)n\(k)"
            let h = NetworkHost(namespace: "dsmopt-\(tag)-w\(k)", index: k, outerLink: outer)
            let steps: [[String]] = [
                ["netns", "add", h.namespace],
                ["link", "add", outer, "type", "veth", "peer", "name", inner],
                ["link", "set", inner, "netns", h.namespace],
                ["addr", "add", "\(h.hostAddress)/30", "dev", outer],
                ["link", "set", outer, "up"],
                ["netns", "exec", h.namespace, ip, "addr", "add", "198.18.\(k).2/30", "dev", inner],
                ["netns", "exec", h.namespace, ip, "link", "set", inner, "up"],
                ["netns", "exec", h.namespace, ip, "link", "set", "lo", "up"],
            ]
            for s in steps {
                let r = try? run(ip, s, timeout: 20)
                if r?.status != 0 {
                    for made in hosts + [h] { made.remove() }
                    return (nil, "ip \(s.joined(separator: " ")): \(r?.stderr.trimmingCharacters(in: .whitespacesAndNewlines) ?? "did not run")")
                }
            }
            hosts.append(h)
        }
        return (hosts, "")
    }

    /// The namespace and its veth pair (the inner end goes with the namespace, the outer with its peer; a
    /// pair left outside by a failed set-up is deleted by name).
    func remove() {
        _ = try? run(Self.ip, ["netns", "delete", namespace], timeout: 20)
        _ = try? run(Self.ip, ["link", "delete", outerLink], timeout: 20)
    }

    /// A store URL of this host's loopback rewritten to reach it from the namespace.
    func storeURL(_ url: String) -> String {
        var c = URLComponents(string: url)!
        c.host = hostAddress
        return c.string!
    }

    /// A process started inside the namespace, under the namespace's name as its host name (its own UTS
    /// namespace); `ip netns exec`, `unshare` and the shell all exec, so its pid is the program's.
    func process(_ executable: String, _ arguments: [String]) -> Process {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: Self.ip)
        p.arguments = ["netns", "exec", namespace, "/usr/bin/unshare", "--uts", "/bin/sh", "-c",
                       "hostname \(namespace) && exec \"$0\" \"$@\"", executable] + arguments
        return p
    }
}
