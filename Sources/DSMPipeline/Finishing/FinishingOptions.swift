import DSMCore
import Foundation
import GDALKit

/// What water cells of the DSM get.
public enum WaterFill: String, Sendable, Codable, CaseIterable {
    /// No data (the default: masked).
    case nodata
    /// One flat level per water body: the median height of the DSM along its shore.
    case flat
}

/// The steps applied to the assembled DSM before the products are made from it (DSM-OPT's standard
/// options): water masking, coregistration on a reference DEM, the output vertical datum.
public struct FinishingOptions: Sendable, Codable, Equatable {
    public var coregister = false
    /// Also remove a tilt (a plane) between the DSM and the reference.
    public var coregisterTilt = false
    /// A raster file or a folder of DEM tiles.
    public var referenceDEM: String?
    public var referenceDatum = VerticalDatum.egm96
    /// False when the reference is a file a user sent (only a few raster formats may open it).
    public var referenceTrusted = true
    public var maskWater = false
    /// GeoJSON polygons or a raster (non-zero = water) given with the job.
    public var waterMask: String?
    /// A multispectral image of the acquisition (Pléiades band order: blue, green, red, near infrared) with
    /// its RPC: water where NDWI = (green − NIR) / (green + NIR) ≥ `ndwiThreshold`.
    public var multispectral: String?
    public var ndwiThreshold = 0.0
    /// The operator's water layer: a folder of raster tiles, a raster or a vector file.
    public var waterLayer: String?
    /// Raster water layers and masks: values ≥ this are water (1 suits a 0/1 mask; 50 a % occurrence map).
    public var waterLayerThreshold = 1.0
    public var waterFill = WaterFill.nodata
    public var verticalDatum = VerticalDatum.ellipsoid

    public init() {}

    public var isEmpty: Bool { !coregister && !maskWater && verticalDatum == .ellipsoid }

    /// The table's keys these options read.
    public static let keys = ["coregister", "coregister-tilt", "reference-datum", "mask-water", "water-fill", "ndwi-threshold", "vertical-datum"]

    /// Sets one option from a (validated) table value.
    public mutating func apply(_ key: String, _ v: ParameterValue) {
        switch key {
        case "coregister": coregister = v.bool ?? coregister
        case "coregister-tilt": coregisterTilt = v.bool ?? coregisterTilt
        case "reference-datum": referenceDatum = v.word.flatMap(VerticalDatum.init(rawValue:)) ?? referenceDatum
        case "mask-water": maskWater = v.bool ?? maskWater
        case "water-fill": waterFill = v.word.flatMap(WaterFill.init(rawValue:)) ?? waterFill
        case "ndwi-threshold": ndwiThreshold = v.number ?? ndwiThreshold
        case "vertical-datum": verticalDatum = v.word.flatMap(VerticalDatum.init(rawValue:)) ?? verticalDatum
        default: break
        }
    }

    /// What is missing when a job (or its preset) asks for a step without its input.
    public static let noReference = ParameterProblem(field: "coregister", value: "true",
                                                     expected: "a reference DEM: one given with the job (--reference-dem) or the server's configured one")
    public static let noWaterSource = ParameterProblem(field: "mask-water", value: "true",
                                                       expected: "a water mask given with the job (--water-mask: GeoJSON or raster), a multispectral image (--multispectral) or the server's configured water layer; none is available")

    /// Problems of options that need an input they do not have.
    public var problems: [ParameterProblem] {
        (coregister && referenceDEM == nil ? [Self.noReference] : []) + (maskWater && waterMask == nil && multispectral == nil && waterLayer == nil ? [Self.noWaterSource] : [])
    }
}

/// A finishing step that cannot be done with what it was given; `field` names the request field.
public enum FinishingError: Error, Equatable, CustomStringConvertible {
    case reference(String)
    case waterMask(String)
    case geoid(String)

    public var field: String {
        switch self {
        case .reference: return "referenceDem"
        case .waterMask: return "waterMask"
        case .geoid: return "vertical-datum"
        }
    }

    public var description: String {
        switch self {
        case .reference(let m): return "reference DEM: \(m)"
        case .waterMask(let m): return "water mask: \(m)"
        case .geoid(let m): return m
        }
    }
}
