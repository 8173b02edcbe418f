import DSMCore
import DSMPipeline
import Foundation

/// OGC API – Processes descriptions of the one process this service runs.
enum ProcessDescription {
    struct Summary: Encodable { var id: String; var title: String; var description: String; var version: String; var links: [[String: String]] }
    struct List: Encodable { var processes: [Summary] }

    static let summary = Summary(id: "dsm-opt", title: "DSM from a Pléiades stereo pair or tri-stereo triplet",
                                 description: "Pair selection, epipolar resampling, dense matching, triangulation, fusion and products (DSM, hillshades, true orthos, point cloud).",
                                 version: "1.0", links: [["href": "/processes/dsm-opt", "rel": "self"],
                                                         ["href": "/processes/dsm-opt/execution", "rel": "http://www.opengis.net/def/rel/ogc/1.0/execute"]])
    static let differenceSummary = Summary(
        id: "dsm-difference", title: "Difference of two DSMs of two dates (change and volumes)",
        description: "B coregistered on A on stable terrain (Nuth & Kääb), then B − A on A's grid: difference.tif, a coloured map with its legend, and the volumes gained, lost and net over the area of interest with their uncertainty.",
        version: "1.0", links: [["href": "/processes/dsm-difference", "rel": "self"],
                                ["href": "/processes/dsm-difference/execution", "rel": "http://www.opengis.net/def/rel/ogc/1.0/execute"]])
    static let list = List(processes: [summary, differenceSummary])

    struct DifferenceDescription: Encodable {
        var id = "dsm-difference"; var title: String; var description: String; var version = "1.0"
        var inputs: [String: String]; var outputs: [Output]; var uncertainty: String; var executionBody: String
    }

    static var difference: DifferenceDescription {
        DifferenceDescription(
            title: differenceSummary.title, description: differenceSummary.description,
            inputs: [
                "dsms": "[A, B]: the earlier DSM (its grid is the difference's), then the later; each {\"job\": id} (a successful job of yours), {\"item\": id} (a published catalogue item) or {\"upload\": id} (a GeoTIFF you uploaded)",
                "aoi": "optional: where volumes are summed, \"minLon,minLat,maxLon,maxLat\" or a GeoJSON Polygon; it is not used as stable terrain (default: the whole common area)",
                "stableMask": "optional {\"upload\": id}: GeoJSON polygons or a raster whose non-zero cells are stable terrain (only there is B fitted on A)",
                "changedMask": "optional {\"upload\": id}: GeoJSON polygons or a raster of what changed (never used as stable terrain)",
                "publish": "optional boolean: publish the products in the DSM catalogue when the job succeeds",
                "name": "optional job name",
            ],
            outputs: [Output(code: "D", file: "difference.tif", description: "B − A on A's grid after coregistration (Float32 COG, nodata NaN), metres"),
                      Output(code: "D", file: "difference.png", description: "coloured difference map (blue: B below A, red: B above A) with its legend"),
                      Output(code: "-", file: "manifest.json", description: "coregistration (shift, statistics), stable terrain (NMAD, correlation length), volumes (gain, loss, net, changed area) with uncertainties and the formula"),
                      Output(code: "-", file: "item.json", description: "STAC item")],
            uncertainty: DifferenceManifest.uncertaintyMethodText,
            executionBody: "{\"dsms\": [{\"job\": \"<id>\"}, {\"job\": \"<id>\"}], \"aoi\": \"55.70,-21.25,55.72,-21.23\"}")
    }

    struct Parameter: Encodable {
        var name: String; var type: String; var group: String; var description: String
        var minimum: Double?; var maximum: Double?; var exclusiveMinimum: Bool?; var exclusiveMaximum: Bool?
        /// Default as text ("5", "true"), or how it is computed.
        var `default`: String?
        /// The rule in words, as in the API's validation messages.
        var expected: String
        /// The allowed words of a choice.
        var choices: [String]? = nil
    }
    struct Output: Encodable { var code: String; var file: String; var description: String }
    struct Description: Encodable {
        var id: String; var title: String; var description: String; var version: String
        var inputs: [String: String]; var parameters: [Parameter]; var presets: [Preset]; var outputs: [Output]
        var executionBody: String
    }

    /// One table entry as described to clients (the portal's form reads ranges, defaults and help from here).
    static func parameter(_ s: ParameterSpec) -> Parameter {
        let d = s.defaultDisplay
        return Parameter(name: s.key, type: s.kind.rawValue, group: s.group.rawValue, description: s.help, minimum: s.minimum, maximum: s.maximum,
                         exclusiveMinimum: s.minimum != nil ? s.minimumExclusive : nil, exclusiveMaximum: s.maximum != nil ? s.maximumExclusive : nil,
                         default: d, expected: s.expected, choices: s.kind == .choice ? s.choices : nil)
    }

    /// JSON Schema (2020-12, as OpenAPI 3.1) of one table entry.
    static func schema(_ s: ParameterSpec) -> [String: Any] {
        var o: [String: Any] = ["description": s.help]
        switch s.kind {
        case .boolean: o["type"] = "boolean"
        case .integer: o["type"] = "integer"
        case .oddInteger: o["type"] = "integer"; o["not"] = ["multipleOf": 2]
        case .number: o["type"] = "number"
        case .choice: o["type"] = "string"; o["enum"] = s.choices; o["default"] = s.choices.first
        }
        if let lo = s.minimum { o[s.minimumExclusive ? "exclusiveMinimum" : "minimum"] = lo }
        if let hi = s.maximum { o[s.maximumExclusive ? "exclusiveMaximum" : "maximum"] = hi }
        if let d = s.defaultValue { o["default"] = s.kind == .boolean ? (d != 0) as Any : d as Any }
        return o
    }

    static func dsmOpt(presets: PresetLibrary) throws -> Description {
        let params: [Parameter] = [
            .init(name: "roi", type: "[int, int, int, int]", group: "standard", description: "region of the first image: col, row, width, height",
                  default: nil, expected: "[col, row, width, height] with non-negative integers and positive sizes"),
            .init(name: "aoi", type: "GeoJSON Polygon/Feature or \"minLon,minLat,maxLon,maxLat\"", group: "standard", description: "area of interest on the ground",
                  default: nil, expected: "a GeoJSON Polygon/Feature or \"minLon,minLat,maxLon,maxLat\""),
        ] + JobParameterTable.specs.map(parameter)
        let outputs: [Output] = [
            .init(code: "A1", file: "correlation_score.tif", description: "correlation score per DSM cell"),
            .init(code: "A2", file: "dsm_raw.tif", description: "DSM before filtering"),
            .init(code: "A2", file: "dsm_uncertainty.tif", description: "height uncertainty of the matched heights, 1 σ in metres"),
            .init(code: "A3", file: "dsm.tif", description: "delivered DSM (+ dsm_filled_mask.tif)"),
            .init(code: "B2", file: "hillshade.tif", description: "coloured hillshade, one light"),
            .init(code: "B4", file: "hillshade_multidirectional.tif", description: "coloured multidirectional hillshade"),
            .init(code: "C1-C3", file: "ortho_<n>_<role>.tif", description: "true ortho of input n (1-based); role forward, nadir or backward from the geometry"),
            .init(code: "C4", file: "ortho_mosaic.tif", description: "ortho-mosaic"),
            .init(code: "D1", file: "pointcloud.las", description: "optional point cloud"),
            .init(code: "A3", file: "water_mask.tif", description: "with mask-water: the water cells masked or flattened"),
            .init(code: "A3", file: "dsm_uncoregistered.tif", description: "with coregister: the DSM before coregistration (+ coregistration_difference.png)"),
        ]
        return Description(id: "dsm-opt", title: summary.title, description: summary.description, version: summary.version,
                           inputs: ["images": "2 or 3 images with RPC: [{\"upload\": \"<id>\"}, …] (POST /uploads first)",
                                    "preset": "landscape preset name", "parameters": "object of the parameters below",
                                    "referenceDem": "optional, with coregister: {\"upload\": \"<id>\"} a reference DEM (GeoTIFF…; its datum: reference-datum); default: the service's",
                                    "waterMask": "optional, with mask-water: {\"upload\": \"<id>\"} GeoJSON polygons (*.geojson) or a raster, non-zero = water",
                                    "multispectral": "optional, with mask-water: {\"upload\": \"<id>\"} a 4-band image with RPC (blue, green, red, NIR) for the NDWI"],
                           parameters: params, presets: presets.presets.values.sorted { $0.name < $1.name }, outputs: outputs,
                           executionBody: #"{"name": "...", "images": [{"upload": "<id>"}, {"upload": "<id>"}], "preset": "default", "parameters": {"roi": [150, 150, 700, 700], "window": 5}}"#)
    }
}
