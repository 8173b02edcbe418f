import Foundation

/// What pair selection needs to know of one image.
public struct StereoView: Sendable {
    public var model: RPCModel
    public var width: Int
    public var height: Int
    public var acquisitionTime: Date?

    public init(model: RPCModel, width: Int, height: Int, acquisitionTime: Date? = nil) {
        self.model = model
        self.width = width
        self.height = height
        self.acquisitionTime = acquisitionTime
    }

    public func footprintPolygon(frame: LocalFrame, at h: Double) throws -> GroundPolygon {
        GroundPolygon(frame: frame, points: try model.footprint(width: width, height: height, at: h))
    }
}

/// The rules DSM-OPT practice applies to stereo pairs. All angles in degrees.
public struct PairSelectionPolicy: Sendable, Codable, Equatable {
    /// Pairs converging more than this are rejected (occlusions, radiometric differences). 40° is a
    /// symmetric B/H of 0.73: it admits the whole preferred band (B/H 0.5 converges 28°) and Pléiades'
    /// common ±12° stereo (24°), which a 20° limit (B/H 0.35) refused. Measured on `dsmopt synth --size 1024
    /// --buildings 40 --noise 15` at B/H 0.5 / 0.7 (28° / 39°): NMAD 0.045 / 0.035 m against the truth.
    public var maximumConvergence = 40.0
    /// Pairs sharing less than this share of the smaller footprint are rejected.
    public var minimumOverlap = 0.25
    /// Below this B/H a pair has no usable parallax.
    public var minimumBaseToHeight = 0.05
    /// The B/H band preferred for Pléiades DSMs.
    public var preferredBaseToHeight = 0.15...0.5
    /// Acquisitions further apart than this (seconds) are multi-date pairs and scored lower.
    public var samePassSeconds = 600.0

    public init() {}
}

/// One pair's geometry and verdict.
public struct PairAssessment: Sendable, Codable, Equatable {
    public var images: [Int]
    public var baseToHeight: Double
    public var convergenceDeg: Double
    public var overlap: Double
    public var score: Double
    /// Seconds between the two acquisitions, when both are known.
    public var timeSeparationSeconds: Double?
    /// Overlap centre, where B/H and convergence are measured.
    public var overlapCentre: GeoPoint?
    public var status: String
    public var reason: String
}

/// The pairs to match, best first, and why.
public struct PairSelection: Sendable, Codable, Equatable {
    public var pairs: [PairAssessment]
    public var selected: [[Int]]
    public var reason: String
}

public enum PairSelectionError: Error, Equatable, CustomStringConvertible {
    case wrongImageCount(Int)
    case noOverlap(images: [Int])

    public var description: String {
        switch self {
        case .wrongImageCount(let n): return "stereo needs 2 or 3 images, got \(n)"
        case .noOverlap(let i): return "images \(i.map(String.init).joined(separator: " and ")) do not overlap on the ground at any height of the RPC domain"
        }
    }
}

extension PairSelection {
    /// The image whose pixels anchor the tie points of the relative orientation: the one in most of the
    /// selected `pairs`; among those, the most nadir one (smallest incidence). When a triplet's wide pair
    /// is selected too every image is in two pairs, and the hub must still be the nadir view: from the
    /// forward view (the first index, as ties were broken until 2026-11-24) the tie points were matched
    /// across the wide pair's convergence, and on a synthetic B/H 0.5 triplet with exact RPCs (`dsmopt synth
    /// --size 1024 --views 3 --buildings 40 --noise 15`) the adjustment put 0.05 px between the nadir view
    /// and the others along the epipolar direction (±0.10 m between the pairs through nadir); from the
    /// nadir view ≤ 0.01 px (±0.01 m).
    public static func hub(of pairs: [[Int]], incidences: [Double]) -> Int {
        var count = [Int](repeating: 0, count: incidences.count)
        for p in pairs { for i in p { count[i] += 1 } }
        return count.indices.max { count[$0] < count[$1] || (count[$0] == count[$1] && incidences[$0] > incidences[$1]) }!
    }
}

/// Measures every pair of 2–3 views and selects what the DSM pipeline matches.
public struct PairSelector: Sendable {
    public var policy: PairSelectionPolicy

    public init(policy: PairSelectionPolicy = PairSelectionPolicy()) { self.policy = policy }

    /// Geometry of one pair at a scene height.
    public func assess(_ a: StereoView, _ b: StereoView, indices: [Int], sceneHeight h: Double) throws -> PairAssessment {
        let centreA = try a.model.localize(column: Double(a.width - 1) / 2, row: Double(a.height - 1) / 2, height: h)
        let frame = LocalFrame(longitude: centreA.longitude, latitude: centreA.latitude, height: h)
        let pa = try a.footprintPolygon(frame: frame, at: h)
        let pb = try b.footprintPolygon(frame: frame, at: h)
        let inter = pa.intersection(convex: pb.convexHull)
        let smaller = min(pa.area, pb.area)
        let overlap = smaller > 0 ? min(1, inter.area / smaller) : 0
        var dt: Double?
        if let ta = a.acquisitionTime, let tb = b.acquisitionTime { dt = abs(ta.timeIntervalSince(tb)) }
        guard overlap > 0 else {
            return PairAssessment(images: indices, baseToHeight: 0, convergenceDeg: 0, overlap: 0, score: 0,
                                  timeSeparationSeconds: dt, overlapCentre: nil, status: "rejected",
                                  reason: "footprints do not overlap at height \(format(h)) m")
        }
        let centre = inter.centroidPoint
        let geometry = StereoGeometry(a.model.viewingGeometry(at: centre), b.model.viewingGeometry(at: centre))
        var assessment = PairAssessment(images: indices, baseToHeight: geometry.baseToHeight,
                                        convergenceDeg: geometry.convergenceDegrees, overlap: overlap, score: 0,
                                        timeSeparationSeconds: dt, overlapCentre: centre, status: "candidate", reason: "")
        judge(&assessment)
        return assessment
    }

    /// Applies the policy: rejection rules, then a score in [0, 1].
    func judge(_ p: inout PairAssessment) {
        let bh = p.baseToHeight
        if p.convergenceDeg > policy.maximumConvergence {
            p.status = "rejected"
            p.reason = "convergence \(format(p.convergenceDeg))° exceeds \(format(policy.maximumConvergence))°: too many occlusions and radiometric differences"
            return
        }
        if p.overlap < policy.minimumOverlap {
            p.status = "rejected"
            p.reason = "overlap \(format(p.overlap)) is below \(format(policy.minimumOverlap)) of the smaller footprint"
            return
        }
        if bh < policy.minimumBaseToHeight {
            p.status = "rejected"
            p.reason = "B/H \(format(bh)) is below \(format(policy.minimumBaseToHeight)): no usable parallax"
            return
        }
        let band = policy.preferredBaseToHeight
        var bhTerm = 1.0
        var notes: [String] = []
        if bh < band.lowerBound {
            bhTerm = bh / band.lowerBound
            notes.append("B/H \(format(bh)) below the preferred \(format(band.lowerBound))–\(format(band.upperBound)): weaker height precision")
        } else if bh > band.upperBound {
            bhTerm = max(0.05, 1 - (bh - band.upperBound) / band.upperBound)
            notes.append("B/H \(format(bh)) above the preferred \(format(band.lowerBound))–\(format(band.upperBound)): more occlusions")
        } else {
            notes.append("B/H \(format(bh)) in the preferred band")
        }
        var dateTerm = 1.0
        if let dt = p.timeSeparationSeconds, dt > policy.samePassSeconds {
            let days = dt / 86400
            dateTerm = 0.7 * exp(-days / 365)
            notes.append("multi-date pair (\(format(days)) days apart): scene changes lower the score")
        } else if p.timeSeparationSeconds != nil {
            notes.append("same-pass acquisition")
        }
        p.score = (p.overlap * bhTerm * dateTerm * 1000).rounded() / 1000
        p.reason = notes.joined(separator: "; ")
    }

    /// Assesses every pair at `sceneHeight` and selects the pairs to match.
    public func select(_ views: [StereoView], sceneHeight h: Double,
                       incidences: [Double]) throws -> PairSelection {
        guard (2...3).contains(views.count) else { throw PairSelectionError.wrongImageCount(views.count) }
        var pairs: [PairAssessment] = []
        for i in 0..<views.count {
            for j in (i + 1)..<views.count {
                pairs.append(try assess(views[i], views[j], indices: [i, j], sceneHeight: h))
            }
        }
        let valid = pairs.filter { $0.status != "rejected" }.sorted { $0.score > $1.score }
        var chosen: [[Int]] = []
        var reason: String
        if valid.isEmpty {
            reason = "no pair satisfies the selection rules (convergence ≤ \(format(policy.maximumConvergence))°, overlap ≥ \(format(policy.minimumOverlap)), B/H ≥ \(format(policy.minimumBaseToHeight)))"
        } else if views.count == 2 {
            chosen = [valid[0].images]
            reason = "stereo pair: the only pair, accepted"
        } else {
            let nadir = incidences.indices.min { incidences[$0] < incidences[$1] }!
            let throughNadir = valid.filter { $0.images.contains(nadir) }
            if throughNadir.count == 2 {
                chosen = throughNadir.map(\.images)
                reason = "tri-stereo: the two pairs sharing the most nadir image \(nadir) (incidence \(format(incidences[nadir]))°) are matched and fused; each sees what the other hides"
                if let wide = valid.first(where: { !$0.images.contains(nadir) }) {
                    if policy.preferredBaseToHeight.contains(wide.baseToHeight) {
                        chosen.append(wide.images)
                        reason += "; the pair \(wide.images) (B/H \(format(wide.baseToHeight))) is in the preferred band and is fused too"
                    } else {
                        reason += "; the pair \(wide.images) (B/H \(format(wide.baseToHeight))) is outside the preferred band and is not matched"
                    }
                } else if let rejected = pairs.first(where: { !$0.images.contains(nadir) }) {
                    reason += "; the pair \(rejected.images) is rejected: \(rejected.reason)"
                }
            } else {
                chosen = Array(valid.prefix(2)).map(\.images)
                reason = chosen.count == 2
                    ? "tri-stereo: the nadir image \(nadir) does not form two valid pairs; the two best-scored valid pairs are matched"
                    : "tri-stereo: only one pair satisfies the selection rules"
            }
            // Best first.
            chosen.sort { a, b in
                (pairs.first { $0.images == a }?.score ?? 0) > (pairs.first { $0.images == b }?.score ?? 0)
            }
        }
        for k in pairs.indices where pairs[k].status != "rejected" {
            pairs[k].status = chosen.contains(pairs[k].images) ? "selected" : "not selected"
        }
        return PairSelection(pairs: pairs, selected: chosen, reason: reason)
    }
}

func format(_ v: Double) -> String {
    let r = (v * 1000).rounded() / 1000
    return r == r.rounded() ? String(Int(r)) : String(r)
}
