import DSMCore
import DSMPipeline
import Foundation

/// OGC API – Processes descriptions of the one process this service runs.
enum ProcessDescription {
    struct Summary: Encodable {
        var id: String; var title: String; var description: String; var version: String
        var jobControlOptions = ProcessDescription.jobControlOptions; var outputTransmission = ProcessDescription.outputTransmission
        var links: [[String: String]]
    }
    /// Jobs run asynchronously (201 with the job's status and `Location`) and may be dismissed (`DELETE /jobs/{id}`).
    static let jobControlOptions = ["async-execute", "dismiss"]
    /// Outputs are links to the product files (`GET /jobs/{id}/results`).
    static let outputTransmission = ["reference"]
    /// Inputs both processes take, described once.
    static let commonInputs: [String: (title: String, description: String)] = [
        "publish": ("publish", "optional boolean: publish the products in the DSM catalogue when the job succeeds"),
        "mail": ("mail", "optional boolean: false, no mail about this job; true, a mail is required (refused when the service sends no mail or you have no address); by default the job is mailed about when it ends if you have an address (PUT /me/email)"),
        "name": ("job name", "optional job name")]
    /// OGC API – Processes input and output descriptions (`schema`: JSON Schema, the one the OpenAPI document
    /// gives the execution request's field).
    struct InputDescription: Encodable { var title: String; var description: String; var minOccurs: Int; var maxOccurs = 1; var schema: JSONFragment }
    struct OutputDescription: Encodable {
        var title: String; var description: String
        /// DSM-OPT's product code and the file name in the job's results.
        var code: String; var file: String
        var schema: JSONFragment
    }

    /// The inputs of a process: the properties of its execution request's schema (`OpenAPIDocument`), with a
    /// title and a description (else the schema's); `commonInputs` describe those both processes take.
    static func inputs(of schemaName: String, about: [String: (title: String, description: String)]) -> [String: InputDescription] {
        let request = OpenAPIDocument.componentSchemas[schemaName]!
        let required = Set(request["required"] as? [String] ?? [])
        let about = about.merging(commonInputs) { own, _ in own }
        var out: [String: InputDescription] = [:]
        for (name, property) in request["properties"] as! [String: Any] {
            var schema = property as! [String: Any]
            // The process description stands alone: the one reference (the parameters) is resolved.
            if schema["$ref"] != nil { schema = OpenAPIDocument.parametersSchema }
            out[name] = InputDescription(title: about[name]?.title ?? name, description: about[name]?.description ?? schema["description"] as? String ?? name,
                                         minOccurs: required.contains(name) ? 1 : 0, schema: JSONFragment(schema))
        }
        return out
    }

    static func outputs(_ list: [Output]) -> [String: OutputDescription] {
        var out: [String: OutputDescription] = [:]
        for o in list {
            out[o.id] = OutputDescription(title: o.title, description: o.description, code: o.code, file: o.file,
                                          schema: JSONFragment(["type": "string", "contentMediaType": STACItem.mediaType(o.file)]))
        }
        return out
    }
    /// The output a product file of a job's results is, among both processes' outputs (`orthos` for the
    /// true orthos, one file per image); nil for a file neither describes.
    static func output(file: String) -> Output? {
        if let o = (dsmOptOutputs + differenceOutputs).first(where: { $0.file == file }) { return o }
        let parts = file.split(separator: "_")
        if parts.count == 3, parts[0] == "ortho", Int(parts[1]) != nil, parts[2].hasSuffix(".tif") { return dsmOptOutputs.first { $0.id == "orthos" } }
        return nil
    }

    struct List: Encodable { var processes: [Summary] }

    static let summary = Summary(id: JobQuery.defaultProcess, title: "DSM from a Pléiades stereo pair or tri-stereo triplet",
                                 description: "Pair selection, epipolar resampling, dense matching, triangulation, fusion and products (DSM, hillshades, true orthos, point cloud).",
                                 version: "1.0", links: [["href": "/processes/dsm-opt", "rel": "self"],
                                                         ["href": "/processes/dsm-opt/execution", "rel": "http://www.opengis.net/def/rel/ogc/1.0/execute"]])
    static let differenceSummary = Summary(
        id: "dsm-difference", title: "Difference of two DSMs of two dates (change and volumes)",
        description: "B coregistered on A on stable terrain (Nuth & Kääb), then B − A on A's grid: difference.tif, a coloured map with its legend, and the volumes gained, lost and net over the area of interest with their uncertainty.",
        version: "1.0", links: [["href": "/processes/dsm-difference", "rel": "self"],
                                ["href": "/processes/dsm-difference/execution", "rel": "http://www.opengis.net/def/rel/ogc/1.0/execute"]])
    /// A process's links (self, execute): its summary's paths prefixed with `base` (`baseURL(request)`).
    static func links(of s: Summary, base: String) -> [[String: String]] {
        s.links.map { l in l.merging(["href": base + (l["href"] ?? "")]) { $1 } }
    }

    /// The process list (`GET /processes`), its links under `base`.
    static func list(base: String) -> List {
        List(processes: [summary, differenceSummary].map { s in
            var s = s
            s.links = links(of: s, base: base)
            return s
        })
    }

    struct DifferenceDescription: Encodable {
        var id = "dsm-difference"; var title: String; var description: String; var version = "1.0"
        var jobControlOptions = ProcessDescription.jobControlOptions; var outputTransmission = ProcessDescription.outputTransmission
        var inputs: [String: InputDescription]; var outputs: [String: OutputDescription]; var uncertainty: String; var executionBody: String
        /// self and execute, under the request's base (`links(of:base:)`).
        var links: [[String: String]] = []
    }

    static var difference: DifferenceDescription {
        DifferenceDescription(
            title: differenceSummary.title, description: differenceSummary.description,
            inputs: inputs(of: "DifferenceRequest", about: [
                "dsms": ("DSMs", "[A, B]: the earlier DSM (its grid is the difference's), then the later; each {\"job\": id} (a successful job of yours), {\"item\": id} (a published catalogue item) or {\"upload\": id} (a GeoTIFF you uploaded)"),
                "aoi": ("area of interest", "optional: where volumes are summed, \"minLon,minLat,maxLon,maxLat\" or a GeoJSON Polygon; it is not used as stable terrain (default: the whole common area)"),
                "stableMask": ("stable terrain", "optional {\"upload\": id}: GeoJSON polygons or a raster whose non-zero cells are stable terrain (only there is B fitted on A)"),
                "changedMask": ("what changed", "optional {\"upload\": id}: GeoJSON polygons or a raster of what changed (never used as stable terrain)")]),
            outputs: outputs(differenceOutputs),
            uncertainty: DifferenceManifest.uncertaintyMethodText,
            executionBody: "{\"inputs\": {\"dsms\": [{\"job\": \"<id>\"}, {\"job\": \"<id>\"}], \"aoi\": \"55.70,-21.25,55.72,-21.23\"}}")
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
    struct Output { var id: String; var title: String; var code: String; var file: String; var description: String }
    struct Description: Encodable {
        var id: String; var title: String; var description: String; var version: String
        var jobControlOptions = ProcessDescription.jobControlOptions; var outputTransmission = ProcessDescription.outputTransmission
        var inputs: [String: InputDescription]; var outputs: [String: OutputDescription]
        /// The parameters input's fields one by one (the portal's form reads ranges, defaults and help from here).
        var parameters: [Parameter]; var presets: [Preset]
        var executionBody: String
        /// self and execute, under the request's base (`links(of:base:)`).
        var links: [[String: String]] = []
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

    /// The DSM process's outputs: one per product file (the true orthos, one file per image, are one output).
    static let dsmOptOutputs: [Output] = [
        .init(id: "correlation_score", title: "A1 correlation score", code: "A1", file: "correlation_score.tif", description: "correlation score per DSM cell"),
        .init(id: "dsm_raw", title: "A2 DSM before filtering", code: "A2", file: "dsm_raw.tif", description: "DSM before filtering"),
        .init(id: "dsm_uncertainty", title: "A2 height uncertainty", code: "A2", file: "dsm_uncertainty.tif", description: "height uncertainty of the matched heights, 1 σ in metres"),
        .init(id: "dsm", title: "A3 DSM", code: "A3", file: "dsm.tif", description: "delivered DSM"),
        .init(id: "dsm_filled_mask", title: "A3 filled cells", code: "A3", file: "dsm_filled_mask.tif", description: "1 where dsm.tif was filled by interpolation, 0 elsewhere"),
        .init(id: "pair_contributions", title: "A2 pair contributions", code: "A2", file: "pair_contributions.tif", description: "which stereo pairs contributed to each cell of dsm_raw.tif (a bit per pair)"),
        .init(id: "hillshade", title: "B2 hillshade", code: "B2", file: "hillshade.tif", description: "coloured hillshade, one light"),
        .init(id: "preview", title: "quick-look", code: "-", file: "preview.png", description: "small coloured hillshade quick-look"),
        .init(id: "hillshade_multidirectional", title: "B4 multidirectional hillshade", code: "B4", file: "hillshade_multidirectional.tif", description: "coloured multidirectional hillshade"),
        .init(id: "orthos", title: "C1–C3 true orthos", code: "C1-C3", file: "ortho_<n>_<role>.tif", description: "true ortho of input n (1-based); role forward, nadir or backward from the geometry"),
        .init(id: "ortho_mosaic", title: "C4 ortho-mosaic", code: "C4", file: "ortho_mosaic.tif", description: "ortho-mosaic"),
        .init(id: "pointcloud", title: "D1 point cloud", code: "D1", file: "pointcloud.las", description: "optional point cloud"),
        .init(id: "water_mask", title: "water mask", code: "A3", file: "water_mask.tif", description: "with mask-water: the water cells masked or flattened"),
        .init(id: "dsm_uncoregistered", title: "DSM before coregistration", code: "A3", file: "dsm_uncoregistered.tif", description: "with coregister: the DSM before coregistration"),
        .init(id: "coregistration_difference", title: "coregistration difference", code: "-", file: "coregistration_difference.png", description: "with coregister: the DSM minus the reference DEM after coregistration, coloured"),
        .init(id: "parameters", title: "parameters", code: "-", file: "parameters.json", description: "the fully resolved parameters of the run"),
        .init(id: "manifest", title: "manifest", code: "-", file: "manifest.json", description: "the products, the grid and CRS, the parameters, the orientation (tie-point residuals) and the pairs' vertical offsets, the provenance"),
        stacItem,
    ]

    /// The difference process's outputs.
    static let differenceOutputs: [Output] = [
        Output(id: "difference", title: "difference", code: "D", file: "difference.tif", description: "B − A on A's grid after coregistration (Float32 COG, nodata NaN), metres"),
        Output(id: "difference_map", title: "difference map", code: "D", file: "difference.png", description: "coloured difference map (blue: B below A, red: B above A) with its legend"),
        Output(id: "manifest", title: "manifest", code: "-", file: "manifest.json", description: "coregistration (shift, statistics), stable terrain (NMAD, correlation length), volumes (gain, loss, net, changed area) with uncertainties and the formula"),
        stacItem,
    ]

    /// The STAC item both processes' results hold.
    static let stacItem = Output(id: "item", title: "STAC item", code: "-", file: "item.json", description: "the products as a STAC item")

    static func dsmOpt(presets: PresetLibrary) throws -> Description {
        let params: [Parameter] = [
            .init(name: "roi", type: "[int, int, int, int]", group: "standard", description: "region of the first image: col, row, width, height",
                  default: nil, expected: "[col, row, width, height] with non-negative integers and positive sizes"),
            .init(name: "aoi", type: "GeoJSON Polygon/Feature or \"minLon,minLat,maxLon,maxLat\"", group: "standard", description: "area of interest on the ground",
                  default: nil, expected: "a GeoJSON Polygon/Feature or \"minLon,minLat,maxLon,maxLat\""),
        ] + JobParameterTable.specs.map(parameter)
        return Description(id: summary.id, title: summary.title, description: summary.description, version: summary.version,
                           inputs: inputs(of: "ExecutionRequest", about: [
                               "images": ("images", "2 or 3 images with RPC: [{\"upload\": \"<id>\"}, …] (POST /uploads first); one upload of a zipped delivery stands for all its views"),
                               "preset": ("landscape preset", "a preset name (GET /presets); default: default"),
                               "parameters": ("parameters", "object of the parameters listed under parameters (standard options and expert settings)"),
                               "referenceDem": ("reference DEM", "optional, with coregister: {\"upload\": \"<id>\"} a reference DEM (GeoTIFF…; its datum: reference-datum); default: the service's"),
                               "waterMask": ("water mask", "optional, with mask-water: {\"upload\": \"<id>\"} GeoJSON polygons (*.geojson) or a raster, non-zero = water"),
                               "multispectral": ("multispectral image", "optional, with mask-water: {\"upload\": \"<id>\"} a 4-band image with RPC (blue, green, red, NIR) for the NDWI")]),
                           outputs: outputs(dsmOptOutputs), parameters: params, presets: presets.presets.values.sorted { $0.name < $1.name },
                           executionBody: #"{"inputs": {"images": [{"upload": "<id>"}, {"upload": "<id>"}], "preset": "default", "parameters": {"roi": [150, 150, 700, 700], "window": 5}}}"#)
    }
}

/// A JSON value built with `JSONSerialization`'s types (dictionaries, arrays, strings, numbers, booleans), encoded as
/// such: the JSON Schemas of the OpenAPI document inside `Encodable` descriptions.
struct JSONFragment: Encodable, @unchecked Sendable {
    let value: Any
    init(_ value: Any) { self.value = value }

    private struct Key: CodingKey {
        var stringValue: String; var intValue: Int? { nil }
        init(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
    }

    func encode(to encoder: Encoder) throws {
        switch value {
        case let d as [String: Any]:
            var c = encoder.container(keyedBy: Key.self)
            for (k, v) in d { try c.encode(JSONFragment(v), forKey: Key(stringValue: k)) }
        case let a as [Any]:
            var c = encoder.unkeyedContainer()
            for v in a { try c.encode(JSONFragment(v)) }
        case let b as Bool:
            var c = encoder.singleValueContainer(); try c.encode(b)
        case let i as Int:
            var c = encoder.singleValueContainer(); try c.encode(i)
        case let x as Double:
            var c = encoder.singleValueContainer(); try c.encode(x)
        case let str as String:
            var c = encoder.singleValueContainer(); try c.encode(str)
        default:
            throw EncodingError.invalidValue(value, .init(codingPath: encoder.codingPath, debugDescription: "not a JSON value"))
        }
    }
}
