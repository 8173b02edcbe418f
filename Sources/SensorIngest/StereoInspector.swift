import DSMCore
import Foundation

/// What `dsmopt inspect` reports about one image. Angles in degrees, lengths in metres; geometry is
/// computed from the RPC model at the image centre and the estimated scene height.
public struct ImageReport: Sendable, Codable {
    public var path: String
    public var width: Int
    public var height: Int
    public var bands: Int
    public var dataType: String
    public var rpcSource: String
    public var rpcFile: String
    /// Ground sampling distance (square root of a pixel's ground area) at the image centre.
    public var gsd: Double
    public var gsdAlongColumns: Double
    public var gsdAlongRows: Double
    /// Angle between the line of sight and the vertical at the image centre.
    public var incidenceDeg: Double
    /// Azimuth of the satellite seen from the image centre, clockwise from north.
    public var azimuthDeg: Double
    /// ISO 8601 UTC, when the metadata or dataset name gives it.
    public var acquisitionTime: String?
    public var platform: String?
    /// What the product metadata states, when there is metadata.
    public var metadata: AcquisitionMetadata?
    /// Ground footprint at the scene height: a closed ring of [longitude, latitude].
    public var footprint: [[Double]]
}

/// The full `inspect` answer.
public struct InspectionReport: Sendable, Codable {
    public var images: [ImageReport]
    public var sceneHeight: SceneHeightEstimate
    public var pairs: [PairAssessment]
    public var selected: [[Int]]
    public var reason: String
}

public enum InspectionError: Error, Equatable, CustomStringConvertible {
    case wrongImageCount(Int, [String])
    case noOverlap(String, String)

    public var description: String {
        switch self {
        case .wrongImageCount(let n, let paths):
            let list = paths.isEmpty ? "" : ": " + paths.joined(separator: ", ")
            return "stereo needs 2 or 3 images, got \(n)\(list)"
        case .noOverlap(let a, let b):
            return "\(a) and \(b) do not overlap on the ground at any height of their RPC models"
        }
    }
}

/// Ingests 2–3 images and decides which pairs the DSM pipeline matches.
public struct StereoInspector: Sendable {
    public var selector = PairSelector()
    public var estimator = SceneHeightEstimator()
    /// Longer side of the decimated images used for the coarse height search.
    public var coarseSize = 768

    public init() {}

    public func inspect(_ inputs: [String]) throws -> InspectionReport {
        let paths = try ProductDiscovery.expand(inputs)
        guard (2...3).contains(paths.count) else { throw InspectionError.wrongImageCount(paths.count, paths) }
        let images = try paths.map { try SensorImage.open($0) }
        return try inspect(images)
    }

    /// The pairs whose footprints overlap at some height of their RPC domains (geometry only, cheap);
    /// throws `noOverlap` when an image overlaps none of the others.
    public func overlappingPairs(_ images: [SensorImage]) throws -> [[Int]] {
        try overlappingPairs(images, views: images.map { StereoView(model: $0.model, width: $0.width, height: $0.height,
                                                                    acquisitionTime: $0.metadata?.acquisitionTime) })
    }

    func overlappingPairs(_ images: [SensorImage], views: [StereoView]) throws -> [[Int]] {
        var overlapping: [[Int]] = []
        for i in 0..<images.count {
            for j in (i + 1)..<images.count {
                let range = commonHeights(images[i].model, images[j].model)
                let probes = [range.lowerBound, (range.lowerBound + range.upperBound) / 2, range.upperBound]
                let overlaps = probes.contains { h in
                    ((try? selector.assess(views[i], views[j], indices: [i, j], sceneHeight: h))?.overlap ?? 0) > 0
                }
                if overlaps { overlapping.append([i, j]) }
            }
        }
        for i in images.indices where !overlapping.contains(where: { $0.contains(i) }) {
            let other = images.indices.first { $0 != i }!
            throw InspectionError.noOverlap(images[i].path, images[other].path)
        }
        return overlapping
    }

    public func inspect(_ images: [SensorImage]) throws -> InspectionReport {
        guard (2...3).contains(images.count) else { throw InspectionError.wrongImageCount(images.count, images.map(\.path)) }
        let views = images.map { StereoView(model: $0.model, width: $0.width, height: $0.height, acquisitionTime: $0.metadata?.acquisitionTime) }

        // 1. Which pairs overlap at some height of the RPC domain.
        let overlapping = try overlappingPairs(images, views: views)

        // 2. Scene heights by sparse correlation over every overlapping pair.
        var samples: [HeightSample] = []
        let coarse = try images.map { try $0.decimated(maxSize: coarseSize) }
        for p in overlapping {
            let (i, j) = (p[0], p[1])
            samples += estimator.samples(left: coarse[i], leftModel: images[i].model, right: coarse[j],
                                         rightModel: images[j].model, heights: commonHeights(images[i].model, images[j].model))
        }
        let scene = SceneHeightEstimator.summarise(samples, fallback: images[0].model.heightNorm.offset)
        let h = scene.median

        // 3. Per-image geometry at the scene height, then pair selection.
        var reports: [ImageReport] = []
        var incidences: [Double] = []
        for img in images {
            let r = try report(img, height: h)
            incidences.append(r.incidenceDeg)
            reports.append(r)
        }
        var selection = try selector.select(views, sceneHeight: h, incidences: incidences)
        for k in selection.pairs.indices {
            selection.pairs[k].baseToHeight = round4(selection.pairs[k].baseToHeight)
            selection.pairs[k].convergenceDeg = round4(selection.pairs[k].convergenceDeg)
            selection.pairs[k].overlap = round4(selection.pairs[k].overlap)
        }
        return InspectionReport(images: reports, sceneHeight: scene, pairs: selection.pairs,
                                selected: selection.selected, reason: selection.reason)
    }

    /// What the service reads from one image: size, RPC source, GSD, viewing angles and footprint at a height
    /// (the scene's; for an image alone, its RPC model's height offset).
    public func report(_ img: SensorImage, height h: Double) throws -> ImageReport {
        let cc = Double(img.width - 1) / 2, cr = Double(img.height - 1) / 2
        let centre = try img.model.localize(column: cc, row: cr, height: h)
        let view = img.model.viewingGeometry(at: GeoPoint(longitude: centre.longitude, latitude: centre.latitude, height: h))
        let gsd = try img.model.groundSampling(column: cc, row: cr, height: h)
        var ring = try img.model.footprint(width: img.width, height: img.height, at: h, samplesPerEdge: 1)
            .map { [round7($0.longitude), round7($0.latitude)] }
        ring.append(ring[0])
        return ImageReport(
            path: img.path, width: img.width, height: img.height, bands: img.bands, dataType: img.dataType.rawValue,
            rpcSource: img.rpcSource.rawValue, rpcFile: img.rpcFile,
            gsd: round4(gsd.mean), gsdAlongColumns: round4(gsd.alongColumns), gsdAlongRows: round4(gsd.alongRows),
            incidenceDeg: round4(view.incidenceDegrees), azimuthDeg: round4(view.azimuthDegrees),
            acquisitionTime: img.metadata?.acquisitionTime.map(isoString), platform: img.metadata?.platform,
            metadata: img.metadata, footprint: ring)
    }

    /// Heights both models were fitted for (their union when the intervals do not meet).
    func commonHeights(_ a: RPCModel, _ b: RPCModel) -> ClosedRange<Double> {
        let ra = a.heightRange, rb = b.heightRange
        let lo = max(ra.lowerBound, rb.lowerBound), hi = min(ra.upperBound, rb.upperBound)
        return lo < hi ? lo...hi : min(ra.lowerBound, rb.lowerBound)...max(ra.upperBound, rb.upperBound)
    }
}

func round4(_ v: Double) -> Double { (v * 10_000).rounded() / 10_000 }
func round7(_ v: Double) -> Double { (v * 10_000_000).rounded() / 10_000_000 }

public func isoString(_ d: Date) -> String {
    let f = ISO8601DateFormatter()
    f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
    return f.string(from: d)
}
