import Crypto
import Foundation
import GDALKit
import SensorIngest

/// What a result was made from and by (in `manifest.json`), so that it can be reproduced and cited: the
/// software and its commit, every input with its SHA-256 and acquisition, the times and CPU seconds.
public struct Provenance: Sendable, Codable, Equatable {
    public struct Software: Sendable, Codable, Equatable {
        public var name = "dsmopt"
        public var version = Software.currentVersion
        /// The source commit: `DSMOPT_COMMIT` (set by the Docker build and by `scripts/run.sh`, which builds the
        /// binary from the checkout it starts), else the HEAD of the source tree the binary was built from when
        /// it is present, read from its `.git` (no `git` process: a run starts no child of its own).
        public var commit: String?
        public var gdal: String
        public static let currentVersion = "0.9.0"

        public static func current() -> Software {
            Software(commit: commit(), gdal: GDAL.version)
        }

        static func commit() -> String? {
            if let c = ProcessInfo.processInfo.environment["DSMOPT_COMMIT"], !c.isEmpty { return c }
            let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../../..").standardized
            return headCommit(ofCheckout: root)
        }

        /// The commit HEAD names in the checkout at `root`: `.git/HEAD`, either a commit or `ref: refs/…`
        /// resolved through the loose ref file or `packed-refs`; a `.git` file (worktree, submodule) points to
        /// the git directory, whose `commondir` holds the shared refs. nil when any of it is missing.
        public static func headCommit(ofCheckout root: URL) -> String? {
            let fm = FileManager.default
            func text(_ url: URL) -> String? {
                (try? String(contentsOf: url, encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines)
            }
            func isCommit(_ s: String) -> Bool { s.count == 40 && s.allSatisfy(\.isHexDigit) }
            var gitDir = root.appendingPathComponent(".git")
            var isDirectory: ObjCBool = false
            guard fm.fileExists(atPath: gitDir.path, isDirectory: &isDirectory) else { return nil }
            if !isDirectory.boolValue {
                guard let line = text(gitDir), line.hasPrefix("gitdir:") else { return nil }
                let path = line.dropFirst("gitdir:".count).trimmingCharacters(in: .whitespaces)
                gitDir = path.hasPrefix("/") ? URL(fileURLWithPath: path) : root.appendingPathComponent(path).standardized
            }
            guard let head = text(gitDir.appendingPathComponent("HEAD")) else { return nil }
            guard head.hasPrefix("ref:") else { return isCommit(head) ? head : nil }
            let ref = head.dropFirst("ref:".count).trimmingCharacters(in: .whitespaces)
            var dirs = [gitDir]
            if let common = text(gitDir.appendingPathComponent("commondir")) {
                dirs.append(common.hasPrefix("/") ? URL(fileURLWithPath: common) : gitDir.appendingPathComponent(common).standardized)
            }
            for dir in dirs {
                if let loose = text(dir.appendingPathComponent(ref)), isCommit(loose) { return loose }
                for line in (text(dir.appendingPathComponent("packed-refs")) ?? "").split(separator: "\n") {
                    let parts = line.split(separator: " ")
                    if parts.count == 2, parts[1] == ref, isCommit(String(parts[0])) { return String(parts[0]) }
                }
            }
            return nil
        }
    }

    /// One input: an image (with its acquisition) or a file of the finishing steps.
    public struct Input: Sendable, Codable, Equatable {
        public var role: String
        /// File name (no server path); for a product, its main file.
        public var file: String
        /// Every file read for it (an image and its sidecars, a DIMAP product's tiles), with size and SHA-256.
        public var files: [File]
        public var acquisitionTime: String?
        public var platform: String?
        public var incidenceDeg: Double?
        public var azimuthDeg: Double?
        public var gsd: Double?
        public struct File: Sendable, Codable, Equatable {
            public var name: String
            public var bytes: Int64
            public var sha256: String
        }
    }

    public var software: Software
    public var inputs: [Input]
    public var started: String?
    public var finished: String?
    public var wallSeconds: Double?
    /// CPU seconds of the run's process and the tools it waited for (gdaldem).
    public var cpuSeconds: Double?

    /// The inputs of a run: its images (every file GDAL reads for each) and the finishing steps' files.
    static func inputs(images: [SensorImage], reports: [ImageReport], finishing: FinishingOptions) throws -> [Input] {
        var out: [Input] = []
        for (k, img) in images.enumerated() {
            let r = k < reports.count ? reports[k] : nil
            let files = (try? RasterDataset(path: img.path, drivers: SensorImage.inputDrivers).fileList) ?? [img.path]
            out.append(Input(role: "image \(k + 1)", file: URL(fileURLWithPath: img.path).lastPathComponent,
                             files: try files.filter { FileManager.default.fileExists(atPath: $0) }.map(file),
                             acquisitionTime: r?.acquisitionTime, platform: r?.platform, incidenceDeg: r?.incidenceDeg,
                             azimuthDeg: r?.azimuthDeg, gsd: r?.gsd))
        }
        for (role, path) in [("reference DEM", finishing.coregister ? finishing.referenceDEM : nil), ("water mask", finishing.maskWater ? finishing.waterMask : nil),
                             ("multispectral image", finishing.maskWater ? finishing.multispectral : nil)] {
            guard let path else { continue }
            var isDir: ObjCBool = false
            guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir) else { continue }
            // An operator's folder of DEM tiles is named, not hashed (it may hold a continent).
            let files = isDir.boolValue ? [] : [try file(path)]
            out.append(Input(role: role, file: URL(fileURLWithPath: path).lastPathComponent, files: files))
        }
        return out
    }

    /// Whether image `k`'s files have the sizes recorded when the run was planned (`recorded`, the plan's
    /// inputs); throws, naming the file, when one of them changed: tiles finished from the file as it was
    /// cannot be mixed with tiles from the new one. False when nothing was recorded (an older plan).
    static func unchanged(image k: Int, path: String, recorded: [Input]?) throws -> Bool {
        guard let input = recorded?.first(where: { $0.role == "image \(k + 1)" }), !input.files.isEmpty,
              let files = try? RasterDataset(path: path, drivers: SensorImage.inputDrivers).fileList else { return false }
        var seen = 0
        for f in files {
            let name = URL(fileURLWithPath: f).lastPathComponent
            // GDAL's own side files (statistics, overviews it may add) are not inputs.
            guard !name.hasSuffix(".aux.xml"), let was = input.files.first(where: { $0.name == name }) else { continue }
            let now = ((try? FileManager.default.attributesOfItem(atPath: f))?[.size] as? NSNumber)?.int64Value
            guard now == was.bytes else {
                throw PipelineError.workFolder(f, "changed since the run was planned (\(was.bytes) bytes, now \(now.map(String.init) ?? "unreadable")): tiles finished from the file as it was cannot be mixed with new ones; start the run again without resuming")
            }
            seen += 1
        }
        return seen > 0
    }

    /// Name, size and SHA-256 of a file, read in 4 MiB blocks.
    static func file(_ path: String) throws -> Input.File {
        guard let h = FileHandle(forReadingAtPath: path) else { throw PipelineError.workFolder(URL(fileURLWithPath: path).lastPathComponent, "cannot be read") }
        defer { try? h.close() }
        var hasher = SHA256()
        var bytes: Int64 = 0
        while let chunk = try h.read(upToCount: 4 << 20), !chunk.isEmpty {
            hasher.update(data: chunk)
            bytes += Int64(chunk.count)
        }
        return Input.File(name: URL(fileURLWithPath: path).lastPathComponent, bytes: bytes,
                          sha256: hasher.finalize().map { String(format: "%02x", $0) }.joined())
    }
}

/// CPU time of this process.
public enum ProcessUsage {
    /// CPU seconds (user + system) of this process and of the children it waited for (gdaldem).
    public static func cpuSeconds() -> Double {
        func seconds(_ who: Int32) -> Double {
            var u = rusage()
            getrusage(__rusage_who_t(who), &u)
            return Double(u.ru_utime.tv_sec + u.ru_stime.tv_sec) + Double(u.ru_utime.tv_usec + u.ru_stime.tv_usec) * 1e-6
        }
        return seconds(RUSAGE_SELF.rawValue) + seconds(RUSAGE_CHILDREN.rawValue)
    }
}
