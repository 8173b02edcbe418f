import Foundation
import TestSupport

/// nginx in front of a daemon as a computing centre would put it: the service under a path prefix
/// (`http://127.0.0.1:PORT/dsm/…` → the daemon's `/…`), the request bodies streamed through unbuffered, and
/// the Host header nginx's default (the daemon's own address), so the daemon cannot learn the public address
/// from the request. Runs as this user from its own folder (`nginx -p`), not as a system service. Needs
/// `nginx` (`scripts/setup.sh --test` installs nginx-light); missing, the test that uses it fails.
final class ReverseProxy: @unchecked Sendable {
    static let executable = "/usr/sbin/nginx"
    let folder: TemporaryFolder
    let process: Process
    let port: Int
    let prefix: String
    /// The public address of the service behind it, e.g. `http://127.0.0.1:PORT/dsm`.
    var base: String { Self.publicURL(port: port, prefix: prefix) }

    /// The address it will have, to start the daemon with (`--public-url`) before the proxy.
    static func publicURL(port: Int, prefix: String = "/dsm") -> String { "http://127.0.0.1:\(port)\(prefix)" }

    /// `port`: from `freeLoopbackPort()`; `backend`: the daemon's `http://127.0.0.1:PORT`.
    init(port: Int, backend: String, prefix: String = "/dsm") throws {
        guard FileManager.default.isExecutableFile(atPath: Self.executable) else {
            throw ServerError(message: "nginx is not installed (\(Self.executable)): run scripts/setup.sh --test")
        }
        folder = try TemporaryFolder()
        self.prefix = prefix
        self.port = port
        let dir = folder.url.path
        // As root, nginx's workers would switch to `nobody`, which cannot write the temporary folders here.
        let user = geteuid() == 0 ? "user root;\n" : ""
        let conf = """
        \(user)worker_processes 1;
        daemon off;
        pid \(dir)/nginx.pid;
        error_log \(dir)/error.log warn;
        events { worker_connections 256; }
        http {
            access_log \(dir)/access.log;
            client_body_temp_path \(dir)/client_body;
            proxy_temp_path \(dir)/proxy;
            fastcgi_temp_path \(dir)/fastcgi;
            uwsgi_temp_path \(dir)/uwsgi;
            scgi_temp_path \(dir)/scgi;
            client_max_body_size 0;
            server {
                listen 127.0.0.1:\(port);
                location = \(prefix) { return 301 \(prefix)/; }
                location \(prefix)/ {
                    proxy_pass \(backend)/;
                    proxy_http_version 1.1;
                    proxy_request_buffering off;
                    proxy_buffering off;
                    proxy_read_timeout 600s;
                }
            }
        }
        """
        try conf.write(toFile: folder.path("nginx.conf"), atomically: true, encoding: .utf8)
        let p = Process()
        p.executableURL = URL(fileURLWithPath: Self.executable)
        p.arguments = ["-p", dir, "-c", folder.path("nginx.conf"), "-e", folder.path("error.log")]
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        try p.run()
        process = p
        // Ready when it answers on its port (any status: the daemon's own /health through it).
        let deadline = Date().addingTimeInterval(20)
        while Date() < deadline {
            if !p.isRunning {
                throw ServerError(message: "nginx stopped at start: \((try? String(contentsOfFile: folder.path("error.log"), encoding: .utf8)) ?? "")")
            }
            if let data = try? Data(contentsOf: URL(string: "\(base)/health")!), !data.isEmpty { return }
            usleep(100_000)
        }
        stop()
        throw ServerError(message: "nginx did not answer on port \(port): \((try? String(contentsOfFile: folder.path("error.log"), encoding: .utf8)) ?? "")")
    }

    func stop() {
        guard process.isRunning else { return }
        process.terminate()   // SIGTERM: nginx's fast shutdown, workers included
        process.waitUntilExit()
    }

    /// A port nothing listens on now (bound once to port 0, then released).
    static func freeLoopbackPort() throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw ServerError(message: "socket: errno \(errno)") }
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = 0
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &addr) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) == 0 && getsockname(fd, $0, &len) == 0 }
        }
        guard bound else { throw ServerError(message: "bind: errno \(errno)") }
        return Int(UInt16(bigEndian: addr.sin_port))
    }
}
