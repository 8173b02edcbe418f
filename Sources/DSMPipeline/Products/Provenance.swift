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
        /// The source commit: `DSMOPT_COMMIT` (set by the Docker build), else `git rev-parse HEAD` of the
        /// source tree the binary was built from when it is present.
        public var commit: String?
        public var gdal: String
        public static let currentVersion = "0.9.0"

        public static func current() -> Software {
            Software(commit: commit(), gdal: GDAL.version)
        }

        static func commit() -> String? {
            if let c = ProcessInfo.processInfo.environment["DSMOPT_COMMIT"], !c.isEmpty { return c }
            let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../../..").standardized
            guard FileManager.default.fileExists(atPath: root.appendingPathComponent(".git").path) else { return nil }
            let p = Process()
            p.executableURL = URL(fileURLWithPath: "/usr/bin/git")
            p.arguments = ["-C", root.path, "rev-parse", "HEAD"]
            let out = Pipe()
            p.standardOutput = out
            p.standardError = FileHandle.nullDevice
            guard (try? p.run()) != nil else { return nil }
            p.waitUntilExit()
            let s = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            return p.terminationStatus == 0 && s.count == 40 ? s : nil
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
