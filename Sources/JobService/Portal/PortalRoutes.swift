import DSMPipeline
import Foundation
import GDALKit
import Hummingbird

/// The web portal (served at `/` to browsers) and the routes only a map needs: the landing page as JSON
/// for API clients, CRS names, map layers, tiles, legends and point values of a job's products.
///
/// The portal is static HTML/CSS/JS on top of the REST API (no second back end). Its files come from
/// `$DSMOPT_PORTAL`, else `share/dsmopt/portal` beside the executable, else the source tree, else
/// `/usr/share/dsmopt/portal`; Leaflet from Debian's `libjs-leaflet` (`$DSMOPT_LEAFLET`, default
/// `/usr/share/javascript/leaflet`). Nothing is fetched from the internet unless the operator sets a
/// basemap URL (`basemapURL`).
enum PortalFiles {
    static func folder() -> String {
        if let env = ProcessInfo.processInfo.environment["DSMOPT_PORTAL"], !env.isEmpty { return env }
        let exe = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent()
        let candidates = [exe.appendingPathComponent("../share/dsmopt/portal").standardized.path,
                          URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("web").standardized.path,
                          "/usr/share/dsmopt/portal"]
        return candidates.first { FileManager.default.fileExists(atPath: ($0 as NSString).appendingPathComponent("index.html")) } ?? candidates[1]
    }

    static func leafletFolder() -> String {
        if let env = ProcessInfo.processInfo.environment["DSMOPT_LEAFLET"], !env.isEmpty { return env }
        return "/usr/share/javascript/leaflet"
    }

    static func contentType(_ name: String) -> String {
        switch (name as NSString).pathExtension.lowercased() {
        case "html": return "text/html; charset=utf-8"
        case "js": return "text/javascript; charset=utf-8"
        case "css": return "text/css; charset=utf-8"
        case "png": return "image/png"
        case "svg": return "image/svg+xml"
        case "json": return "application/json"
        default: return "application/octet-stream"
        }
    }

    /// A file below `root` named by `relative` (letters, digits, '.', '_', '-' and '/' between names; no
    /// hidden names, no '..'); nil when it does not exist.
    static func file(_ relative: String, in root: String) -> String? {
        let parts = relative.split(separator: "/", omittingEmptySubsequences: false)
        guard !parts.isEmpty, parts.count <= 3, parts.allSatisfy({ p in
            !p.isEmpty && !p.hasPrefix(".") && p.unicodeScalars.allSatisfy { CharacterSet.alphanumerics.contains($0) || "._-".unicodeScalars.contains($0) }
        }) else { return nil }
        let path = (root as NSString).appendingPathComponent(relative)
        var dir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &dir), !dir.boolValue else { return nil }
        return path
    }

    static func response(_ path: String, cache: String) throws -> Response {
        guard let data = FileManager.default.contents(atPath: path) else { throw APIProblem.notFound("no such file") }
        return Response(status: .ok, headers: [.contentType: contentType(path), .cacheControl: cache],
                        body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }
}

extension ServiceAPI {
    /// OGC API – Common conformance classes this service implements.
    static let conformance = [
        "http://www.opengis.net/spec/ogcapi-common-1/1.0/conf/core",
        "http://www.opengis.net/spec/ogcapi-common-1/1.0/conf/json",
        "http://www.opengis.net/spec/ogcapi-common-1/1.0/conf/oas30",
        "http://www.opengis.net/spec/ogcapi-processes-1/1.0/conf/core",
        "http://www.opengis.net/spec/ogcapi-processes-1/1.0/conf/json",
        "http://www.opengis.net/spec/ogcapi-processes-1/1.0/conf/job-list",
        "http://www.opengis.net/spec/ogcapi-processes-1/1.0/conf/dismiss",
        "http://www.opengis.net/spec/ogcapi-processes-1/1.0/conf/callback",
        "http://www.opengis.net/spec/ogcapi-processes-1/1.0/conf/oas30",
    ]

    /// A browser (Accept: text/html, no `f=json`) gets the portal; API clients the landing page.
    static func wantsHTML(_ request: Request) throws -> Bool {
        if let f = request.uri.queryParameters["f"] {
            guard f == "html" || f == "json" else { throw APIProblem.badRequest("f must be json or html") }
            return f == "html"
        }
        let accept = request.headers[.accept] ?? ""
        return accept.contains("text/html")
    }

    func addPortalRoutes(to router: Router<BasicRequestContext>) {
        let portal = PortalFiles.folder(), leaflet = PortalFiles.leafletFolder()
        router.get("/") { request, _ in
            if try Self.wantsHTML(request) {
                guard let index = PortalFiles.file("index.html", in: portal) else {
                    throw APIProblem.notFound("the web portal's files are not installed (set DSMOPT_PORTAL)")
                }
                return try PortalFiles.response(index, cache: "no-cache")
            }
            struct Landing: Encodable { var title: String; var description: String; var links: [[String: String]] }
            let base = baseURL(request)
            return jsonResponse(Landing(
                title: "dsmopt", description: "Stereo-photogrammetry DSM service for Pléiades pairs and triplets (OGC API – Processes)",
                links: [["href": "\(base)/", "rel": "self", "type": "application/json", "title": "this document"],
                        ["href": "\(base)/?f=html", "rel": "alternate", "type": "text/html", "title": "the web portal"],
                        ["href": "\(base)/openapi.json", "rel": "service-desc", "type": "application/vnd.oai.openapi+json;version=3.1", "title": "the API definition"],
                        ["href": "\(base)/conformance", "rel": "http://www.opengis.net/def/rel/ogc/1.0/conformance", "type": "application/json", "title": "conformance classes"],
                        ["href": "\(base)/processes", "rel": "http://www.opengis.net/def/rel/ogc/1.0/processes", "type": "application/json", "title": "processes"],
                        ["href": "\(base)/jobs", "rel": "http://www.opengis.net/def/rel/ogc/1.0/job-list", "type": "application/json", "title": "jobs"],
                        ["href": "\(base)/stac", "rel": "data", "type": "application/json", "title": "the DSM catalogue (STAC API)"]]))
        }
        router.get("/conformance") { _, _ in jsonResponse(["conformsTo": Self.conformance]) }
        router.get("/portal/config.json") { _, _ in
            struct PortalConfig: Encodable { var basemapURL: String?; var basemapAttribution: String?; var maxUploadBytes: Int64; var maxConcurrentUploads: Int }
            return jsonResponse(PortalConfig(basemapURL: config.basemapURL, basemapAttribution: config.basemapAttribution,
                                             maxUploadBytes: config.maxUploadBytes, maxConcurrentUploads: config.maxConcurrentUploads))
        }
        for depth in 1...3 {
            let pattern = (0..<depth).map { ":p\($0)" }.joined(separator: "/")
            router.get(RouterPath(stringLiteral: "/portal/leaflet/" + pattern)) { _, context in
                let rel = (0..<depth).compactMap { context.parameters.get("p\($0)") }.joined(separator: "/")
                guard let f = PortalFiles.file(rel, in: leaflet) else { throw APIProblem.notFound("no file \(rel) (is libjs-leaflet installed?)") }
                return try PortalFiles.response(f, cache: "max-age=86400")
            }
        }
        router.get("/portal/:file") { _, context in
            let name = context.parameters.get("file") ?? ""
            guard let f = PortalFiles.file(name, in: portal) else { throw APIProblem.notFound("no portal file \(name)") }
            return try PortalFiles.response(f, cache: "no-cache")
        }
        router.get("/crs/:code") { _, context in
            guard let code = context.parameters.get("code").flatMap(Int.init), (1024...32767).contains(code) else {
                throw APIProblem.unprocessable("an EPSG code is an integer from 1024 to 32767",
                                               errors: [.init(field: "parameters.epsg", message: "an integer from 1024 to 32767")])
            }
            guard let d = try? SpatialReference.describe(epsg: code) else { throw APIProblem.notFound("EPSG:\(code) is not a coordinate reference system GDAL knows") }
            // `gridProblem`: why a DSM cannot be made in it (`OutputCRS.problem`); absent when one can.
            struct CRS: Encodable { var epsg: Int; var name: String; var projected: Bool; var geographic: Bool; var gridProblem: String? }
            return jsonResponse(CRS(epsg: code, name: d.name, projected: d.projected, geographic: d.geographic, gridProblem: OutputCRS.problem(epsg: code, described: d)))
        }
        router.get("/jobs/:id/map") { request, context in
            let user = try await authenticate(request)
            let job = try await readyJob(try await visibleJob(context.parameters.get("id"), for: user, reading: true))
            let results = try resultsFolder(job)
            struct Map: Encodable { var layers: [MapLayer]; var footprint: [[Double]]?; var bounds: [Double]? }
            var footprint: [[Double]]?
            let main = ["dsm.tif", "difference.tif"].map { (results as NSString).appendingPathComponent($0) }.first { FileManager.default.fileExists(atPath: $0) }
            if let main, let dsm = try? RasterDataset(path: main), let gt = dsm.geoTransform,
               let t = try? CoordinateTransform(fromWKT: dsm.projectionWKT, toWKT: try SpatialReference.wkt(epsg: 4326)) {
                let corners = [(0.0, 0.0), (Double(dsm.width), 0), (Double(dsm.width), Double(dsm.height)), (0, Double(dsm.height))]
                footprint = corners.compactMap { c in
                    t.transform(gt[0] + c.0 * gt[1] + c.1 * gt[2], gt[3] + c.0 * gt[4] + c.1 * gt[5]).map { [$0.x, $0.y] }
                }
            }
            let lons = footprint?.map { $0[0] } ?? [], lats = footprint?.map { $0[1] } ?? []
            let bounds = lons.isEmpty ? nil : [lons.min()!, lats.min()!, lons.max()!, lats.max()!]
            return jsonResponse(Map(layers: try mapLayers(job), footprint: footprint, bounds: bounds))
        }
        router.get("/jobs/:id/tiles/:layer/legend") { request, context in
            let user = try await authenticate(request)
            let job = try await readyJob(try await visibleJob(context.parameters.get("id"), for: user, reading: true))
            let (layer, path) = try mapLayer(job, context.parameters.get("layer"))
            return jsonResponse(try await maps.legend(layer, path: path))
        }
        router.get("/jobs/:id/tiles/:layer/:z/:x/:y") { request, context in
            let user = try await authenticate(request)
            let job = try await readyJob(try await visibleJob(context.parameters.get("id"), for: user, reading: true))
            let (layer, path) = try mapLayer(job, context.parameters.get("layer"))
            let yText = context.parameters.get("y") ?? ""
            guard yText.hasSuffix(".png"), let z = context.parameters.get("z").flatMap(Int.init), let x = context.parameters.get("x").flatMap(Int.init),
                  let y = Int(yText.dropLast(4)), MapTiles.bounds(z: z, x: x, y: y) != nil else {
                throw APIProblem.notFound("tiles are /jobs/{id}/tiles/{layer}/{z}/{x}/{y}.png with 0 ≤ z ≤ 24 and x, y inside the level")
            }
            // Finished products never change: a tile can be cached by the browser.
            guard let png = try await maps.tile(layer, path: path, z: z, x: x, y: y) else {
                return Response(status: .noContent, headers: [.cacheControl: "private, max-age=3600"])
            }
            return Response(status: .ok, headers: [.contentType: "image/png", .cacheControl: "private, max-age=3600"],
                            body: .init(byteBuffer: ByteBuffer(bytes: png)))
        }
        router.get("/jobs/:id/probe") { request, context in
            let user = try await authenticate(request)
            let job = try await readyJob(try await visibleJob(context.parameters.get("id"), for: user, reading: true))
            guard let lon = request.uri.queryParameters["lon"].flatMap({ Double(String($0)) }), let lat = request.uri.queryParameters["lat"].flatMap({ Double(String($0)) }),
                  (-180...180).contains(lon), (-90...90).contains(lat) else {
                throw APIProblem.unprocessable("give ?lon=…&lat=… in degrees (WGS84)")
            }
            return jsonResponse(try await maps.probe(results: try resultsFolder(job), longitude: lon, latitude: lat))
        }
    }

    func resultsFolder(_ job: Job) throws -> String {
        guard let dir = config.resultsDirectory(job) else { throw APIProblem.notFound("job \(job.id) has no results") }
        return dir
    }

    /// The map layers of a finished job, from its manifest (read as the results routes read it).
    func mapLayers(_ job: Job) throws -> [MapLayer] {
        MapLayer.layers(products: try manifestObject(job)["products"] as? [[String: Any]] ?? [])
    }

    func mapLayer(_ job: Job, _ name: String?) throws -> (MapLayer, String) {
        guard let name, let layer = try mapLayers(job).first(where: { $0.name == name }) else {
            throw APIProblem.notFound("job \(job.id) has no map layer \(name ?? "")")
        }
        return (layer, (try resultsFolder(job) as NSString).appendingPathComponent(layer.file))
    }
}
