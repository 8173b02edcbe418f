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
    static let list = List(processes: [summary])

    struct Parameter: Encodable { var name: String; var type: String; var description: String; var minimum: Double?; var maximum: Double?; var `default`: String? }
    struct Output: Encodable { var code: String; var file: String; var description: String }
    struct Description: Encodable {
        var id: String; var title: String; var description: String; var version: String
        var inputs: [String: String]; var parameters: [Parameter]; var presets: [Preset]; var outputs: [Output]
        var executionBody: String
    }

    static func dsmOpt(presets: PresetLibrary) throws -> Description {
        let d = MatchingParameters.defaults
        let params: [Parameter] = [
            .init(name: "roi", type: "[int, int, int, int]", description: "region of the first image: col, row, width, height", minimum: nil, maximum: nil, default: nil),
            .init(name: "aoi", type: "GeoJSON Polygon/Feature or \"minLon,minLat,maxLon,maxLat\"", description: "area of interest on the ground", minimum: nil, maximum: nil, default: nil),
            .init(name: "window", type: "odd integer", description: "correlation window size", minimum: 3, maximum: 15, default: "\(d.window)"),
            .init(name: "regularisation", type: "number", description: "penalty on disparity changes relative to the correlation cost", minimum: 0, maximum: 1, default: "\(d.regularisation)"),
            .init(name: "z-uncertainty", type: "number", description: "search interval around the coarse estimate, share of the range", minimum: 0, maximum: 1, default: "\(d.zUncertainty)"),
            .init(name: "precision", type: "number", description: "quantisation step of the search, pixels", minimum: 0.05, maximum: 1, default: "\(d.precision)"),
            .init(name: "decorrelation-threshold", type: "number", description: "pixels whose correlation falls below it are left empty", minimum: 0, maximum: 0.99, default: "\(d.decorrelationThreshold)"),
            .init(name: "resolution", type: "number", description: "DSM cell size in metres", minimum: 0, maximum: 1000, default: nil),
            .init(name: "resolution-factor", type: "number", description: "DSM cell size as a multiple of the image GSD", minimum: 0.5, maximum: 20, default: "2"),
            .init(name: "epsg", type: "integer", description: "output CRS (default: the UTM zone of the scene)", minimum: nil, maximum: nil, default: nil),
            .init(name: "point-cloud", type: "boolean", description: "also deliver the DSM as a LAS point cloud", minimum: nil, maximum: nil, default: "false"),
            .init(name: "orthos", type: "boolean", description: "deliver a true ortho per image", minimum: nil, maximum: nil, default: "true"),
            .init(name: "mosaic", type: "boolean", description: "deliver the ortho-mosaic", minimum: nil, maximum: nil, default: "true"),
        ]
        let outputs: [Output] = [
            .init(code: "A1", file: "correlation_score.tif", description: "correlation score per DSM cell"),
            .init(code: "A2", file: "dsm_raw.tif", description: "DSM before filtering"),
            .init(code: "A3", file: "dsm.tif", description: "delivered DSM (+ dsm_filled_mask.tif)"),
            .init(code: "B2", file: "hillshade.tif", description: "coloured hillshade, one light"),
            .init(code: "B4", file: "hillshade_multidirectional.tif", description: "coloured multidirectional hillshade"),
            .init(code: "C1-C3", file: "ortho_<image>.tif", description: "true ortho of each image"),
            .init(code: "C4", file: "ortho_mosaic.tif", description: "ortho-mosaic"),
            .init(code: "D1", file: "pointcloud.las", description: "optional point cloud"),
        ]
        return Description(id: "dsm-opt", title: summary.title, description: summary.description, version: summary.version,
                           inputs: ["images": "2 or 3 images with RPC: [{\"upload\": \"<id>\"}, …] (POST /uploads first)",
                                    "preset": "landscape preset name", "parameters": "object of the parameters below"],
                           parameters: params, presets: presets.presets.values.sorted { $0.name < $1.name }, outputs: outputs,
                           executionBody: #"{"name": "...", "images": [{"upload": "<id>"}, {"upload": "<id>"}], "preset": "default", "parameters": {"roi": [150, 150, 700, 700], "window": 5}}"#)
    }
}
