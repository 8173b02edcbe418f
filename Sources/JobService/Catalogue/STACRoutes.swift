import DSMPipeline
import Foundation
import HTTPTypes
import Hummingbird

/// A catalogue search, parsed from GET query parameters or a POST body (STAC API – Item Search).
struct CatalogueSearch: Equatable {
    var bbox: [Double]?
    /// Polygons (rings of lon/lat) of `intersects`.
    var intersects: [[[Double]]]?
    var intersectsJSON: String?
    var start: Date?
    var end: Date?
    var datetime: String?
    var ids: [String]?
    var collections: [String]?
    var limit = 10
    var offset = 0

    static let maxLimit = 1000
    /// The search's fields, the same in a GET query and a POST body.
    static let fields: Set<String> = ["bbox", "datetime", "ids", "collections", "intersects", "limit", "token"]

    /// GET: `bbox=a,b,c,d`, `datetime=…`, `ids=a,b`, `collections=…`, `intersects=<GeoJSON>`, `limit`, `token`.
    static func parse(query q: [String: String]) throws -> CatalogueSearch {
        if let k = q.keys.sorted().first(where: { !fields.contains($0) }) { throw APIProblem.badRequest("unknown search parameter \(k) (known: \(fields.sorted().joined(separator: ", ")))") }
        var s = CatalogueSearch()
        if let b = q["bbox"] {
            let v = b.split(separator: ",", omittingEmptySubsequences: false).map { Double($0.trimmingCharacters(in: .whitespaces)) }
            guard v.allSatisfy({ $0 != nil }) else { throw APIProblem.badRequest("bbox must be minLon,minLat,maxLon,maxLat") }
            s.bbox = try bbox(v.map { $0! })
        }
        if let t = q["datetime"] { try s.setDatetime(t) }
        if let i = q["ids"] { s.ids = i.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty } }
        if let c = q["collections"] { s.collections = c.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) } }
        if let g = q["intersects"] {
            guard let o = try? JSONSerialization.jsonObject(with: Data(g.utf8)) else { throw APIProblem.badRequest("intersects must be a GeoJSON geometry") }
            try s.setIntersects(o)
        }
        if let l = q["limit"] { guard let v = Int(l) else { throw APIProblem.badRequest("limit must be an integer from 1 to \(maxLimit)") }; try s.setLimit(v) }
        if let t = q["token"] { try s.setToken(t) }
        try s.check()
        return s
    }

    /// POST: the same fields as JSON (`bbox` and `ids`, `collections` as arrays, `intersects` an object).
    static func parse(body: Data) throws -> CatalogueSearch {
        guard let o = try? JSONSerialization.jsonObject(with: body) as? [String: Any] else { throw APIProblem.badRequest("the search body must be a JSON object") }
        // Typed view of the same body: JSON numbers and booleans kept apart.
        let typed = (try? JSONDecoder().decode([String: JSONValue].self, from: body)) ?? [:]
        if let k = o.keys.sorted().first(where: { !fields.contains($0) }) { throw APIProblem.badRequest("unknown search field \(k) (known: \(fields.sorted().joined(separator: ", ")))") }
        var s = CatalogueSearch()
        if let b = o["bbox"] {
            _ = b
            guard let a = typed["bbox"]?.array, case let v = a.compactMap(\.number), v.count == a.count else { throw APIProblem.badRequest("bbox must be an array of 4 numbers") }
            s.bbox = try bbox(v)
        }
        if let t = o["datetime"] { guard let t = t as? String else { throw APIProblem.badRequest("datetime must be a string") }; try s.setDatetime(t) }
        for key in ["ids", "collections"] {
            guard let v = o[key] else { continue }
            guard let a = v as? [String] else { throw APIProblem.badRequest("\(key) must be an array of strings") }
            if key == "ids" { s.ids = a } else { s.collections = a }
        }
        if let g = o["intersects"] { try s.setIntersects(g) }
        if o["limit"] != nil {
            guard let n = typed["limit"]?.number, n == n.rounded(), abs(n) < 1e9 else {
                throw APIProblem.badRequest("limit must be an integer from 1 to \(maxLimit)")
            }
            try s.setLimit(Int(n))
        }
        if let t = o["token"] { guard let t = t as? String else { throw APIProblem.badRequest("token must be a string") }; try s.setToken(t) }
        try s.check()
        return s
    }

    static func bbox(_ v: [Double]) throws -> [Double] {
        // A 3D box (6 numbers) is read in 2D.
        let b = v.count == 6 ? [v[0], v[1], v[3], v[4]] : v
        guard b.count == 4, b.allSatisfy(\.isFinite), b[0] >= -180, b[2] <= 180, b[1] >= -90, b[3] <= 90, b[1] <= b[3], b[0] <= b[2] else {
            throw APIProblem.badRequest("bbox must be minLon,minLat,maxLon,maxLat within −180…180 and −90…90, min ≤ max")
        }
        return b
    }

    mutating func setLimit(_ v: Int) throws {
        guard (1...Self.maxLimit).contains(v) else { throw APIProblem.badRequest("limit must be an integer from 1 to \(Self.maxLimit)") }
        limit = v
    }

    mutating func setToken(_ t: String) throws {
        guard t.hasPrefix("next:"), let v = Int(t.dropFirst(5)), v >= 0, v < 1 << 40 else { throw APIProblem.badRequest("token must be one given in a next link") }
        offset = v
    }

    /// An RFC 3339 instant, or an interval `start/end` with `..` (or nothing) for an open end.
    mutating func setDatetime(_ t: String) throws {
        (start, end) = try DateTimeInterval.parse(t, field: "datetime")
        datetime = t
    }

    /// Point, Polygon or MultiPolygon (the shapes a DSM footprint is searched with).
    mutating func setIntersects(_ o: Any) throws {
        guard let g = o as? [String: Any], let type = g["type"] as? String else { throw APIProblem.badRequest("intersects must be a GeoJSON geometry") }
        func ring(_ a: Any?) -> [[Double]]? {
            guard let r = a as? [[Double]], r.count >= 4, r.allSatisfy({ $0.count >= 2 && $0.allSatisfy(\.isFinite) }) else { return nil }
            return r.map { [$0[0], $0[1]] }
        }
        switch type {
        case "Point":
            guard let p = g["coordinates"] as? [Double], p.count >= 2 else { throw APIProblem.badRequest("intersects: a Point needs [lon, lat]") }
            intersects = [[[p[0], p[1]], [p[0], p[1]], [p[0], p[1]], [p[0], p[1]]]]
        case "Polygon":
            guard let c = g["coordinates"] as? [Any], let r = ring(c.first) else { throw APIProblem.badRequest("intersects: a Polygon needs a ring of at least 4 positions") }
            intersects = [r]
        case "MultiPolygon":
            guard let c = g["coordinates"] as? [[Any]], !c.isEmpty else { throw APIProblem.badRequest("intersects: a MultiPolygon needs polygons") }
            var out: [[[Double]]] = []
            for p in c { guard let r = ring(p.first) else { throw APIProblem.badRequest("intersects: each polygon needs a ring of at least 4 positions") }; out.append(r) }
            intersects = out
        default: throw APIProblem.badRequest("intersects: \(type) is not supported (Point, Polygon, MultiPolygon)")
        }
        intersectsJSON = String(decoding: try JSONSerialization.data(withJSONObject: g, options: [.sortedKeys]), as: UTF8.self)
    }

    func check() throws {
        if bbox != nil && intersects != nil { throw APIProblem.badRequest("give bbox or intersects, not both") }
    }

    /// The store's query: bbox (or the intersects geometry's box) and time; `intersects` is then tested
    /// exactly on the footprints, so the paging is done here.
    var storeQuery: CatalogueQuery {
        var q = CatalogueQuery(bbox: bbox, start: start, end: end, ids: ids, limit: limit + 1, offset: offset)
        if let polys = intersects {
            let pts = polys.flatMap { $0 }
            q.bbox = [pts.map { $0[0] }.min()!, pts.map { $0[1] }.min()!, pts.map { $0[0] }.max()!, pts.map { $0[1] }.max()!]
            q.limit = 100_000; q.offset = 0
        }
        return q
    }

    /// Query parameters of this search (for paging links), with another token.
    func queryString(token: Int?) -> String {
        var items: [(String, String)] = [("limit", "\(limit)")]
        if let b = bbox { items.append(("bbox", b.map { "\($0)" }.joined(separator: ","))) }
        if let d = datetime { items.append(("datetime", d)) }
        if let i = ids { items.append(("ids", i.joined(separator: ","))) }
        if let c = collections { items.append(("collections", c.joined(separator: ","))) }
        if let g = intersectsJSON { items.append(("intersects", g)) }
        if let t = token { items.append(("token", "next:\(t)")) }
        var allowed = CharacterSet.urlQueryAllowed
        allowed.remove(charactersIn: "&=+:/,")
        return items.map { "\($0.0)=\($0.1.addingPercentEncoding(withAllowedCharacters: allowed) ?? $0.1)" }.joined(separator: "&")
    }

    /// The POST body of this search (for paging links), with another token.
    func body(token: Int?) -> [String: Any] {
        var b: [String: Any] = ["limit": limit]
        if let v = bbox { b["bbox"] = v }
        if let d = datetime { b["datetime"] = d }
        if let i = ids { b["ids"] = i }
        if let c = collections { b["collections"] = c }
        if let g = intersectsJSON, let o = try? JSONSerialization.jsonObject(with: Data(g.utf8)) { b["intersects"] = o }
        if let t = token { b["token"] = "next:\(t)" }
        return b
    }
}

/// Planar intersection of lon/lat polygons (footprints of a few km: no antimeridian or pole handling).
enum Footprints {
    static func intersects(_ a: [[Double]], _ b: [[Double]]) -> Bool {
        func box(_ r: [[Double]]) -> (Double, Double, Double, Double) {
            (r.map { $0[0] }.min()!, r.map { $0[1] }.min()!, r.map { $0[0] }.max()!, r.map { $0[1] }.max()!)
        }
        let x = box(a), y = box(b)
        guard x.0 <= y.2, y.0 <= x.2, x.1 <= y.3, y.1 <= x.3 else { return false }
        if contains(a, b[0]) || contains(b, a[0]) { return true }
        for i in 0..<(a.count - 1) {
            for j in 0..<(b.count - 1) where segmentsCross(a[i], a[i + 1], b[j], b[j + 1]) { return true }
        }
        return false
    }

    static func contains(_ ring: [[Double]], _ p: [Double]) -> Bool {
        var inside = false
        var j = ring.count - 1
        for i in 0..<ring.count {
            let a = ring[i], b = ring[j]
            if (a[1] > p[1]) != (b[1] > p[1]), p[0] < (b[0] - a[0]) * (p[1] - a[1]) / (b[1] - a[1]) + a[0] { inside.toggle() }
            j = i
        }
        return inside
    }

    static func segmentsCross(_ p: [Double], _ q: [Double], _ r: [Double], _ s: [Double]) -> Bool {
        func orient(_ a: [Double], _ b: [Double], _ c: [Double]) -> Double { (b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0]) }
        func on(_ a: [Double], _ b: [Double], _ c: [Double]) -> Bool {
            min(a[0], b[0]) <= c[0] && c[0] <= max(a[0], b[0]) && min(a[1], b[1]) <= c[1] && c[1] <= max(a[1], b[1])
        }
        let d1 = orient(r, s, p), d2 = orient(r, s, q), d3 = orient(p, q, r), d4 = orient(p, q, s)
        if ((d1 > 0 && d2 < 0) || (d1 < 0 && d2 > 0)) && ((d3 > 0 && d4 < 0) || (d3 < 0 && d4 > 0)) { return true }
        return (d1 == 0 && on(r, s, p)) || (d2 == 0 && on(r, s, q)) || (d3 == 0 && on(p, q, r)) || (d4 == 0 && on(p, q, s))
    }

    /// The outer ring of an item's Polygon geometry.
    static func ring(ofItem item: [String: Any]) -> [[Double]]? {
        guard let g = item["geometry"] as? [String: Any], let c = g["coordinates"] as? [[[Double]]] else { return nil }
        return c.first
    }
}

/// The STAC API of the DSM catalogue (`/stac`): landing page, conformance, the `dsm-opt` collection, its
/// items, item search (GET and POST), and the assets (with Range). Every authenticated user (the catalogue
/// role included) reads every published item; nothing unpublished is ever listed. Publishing and
/// withdrawing are under `/jobs/{id}/publish`.
extension ServiceAPI {
    static let stacConformance = [
        "https://api.stacspec.org/v1.0.0/core",
        "https://api.stacspec.org/v1.0.0/collections",
        "https://api.stacspec.org/v1.0.0/ogcapi-features",
        "https://api.stacspec.org/v1.0.0/item-search",
        "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/core",
        "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/geojson",
    ]

    var catalogue: Catalogue { Catalogue(store: store, config: config) }

    static func json(_ object: Any, status: HTTPResponse.Status = .ok, contentType: String = "application/json", headers extra: HTTPFields = [:]) throws -> Response {
        let data = try jsonBody(object: object)
        var headers = extra
        headers[.contentType] = contentType
        return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }

    /// The files of a published item: its assets (their `./file` addresses in the stored item), then the item.
    static func itemFiles(_ p: Publication) -> [String] {
        let item = (try? JSONSerialization.jsonObject(with: Data(p.item.utf8))) as? [String: Any]
        let assets = (item?["assets"] as? [String: Any] ?? [:]).values.compactMap { ($0 as? [String: Any])?["href"] as? String }
            .map { $0.hasPrefix("./") ? String($0.dropFirst(2)) : $0 }.filter { ServiceAPI.sanitize($0) == $0 }.sorted()
        return assets + ["item.json"]
    }

    /// A published item as served: links, absolute asset addresses.
    func stacItem(_ p: Publication, base: String) throws -> [String: Any] {
        guard var item = try JSONSerialization.jsonObject(with: Data(p.item.utf8)) as? [String: Any] else {
            throw APIProblem.notFound("item \(p.id) is unreadable")
        }
        let coll = "\(base)/stac/collections/\(Catalogue.collectionId)"
        item["links"] = [
            ["rel": "self", "href": "\(coll)/items/\(p.id)", "type": "application/geo+json"],
            ["rel": "parent", "href": coll, "type": "application/json"],
            ["rel": "collection", "href": coll, "type": "application/json"],
            ["rel": "root", "href": "\(base)/stac", "type": "application/json"],
            ["rel": "license", "href": "https://creativecommons.org/licenses/by-nc/4.0/", "type": "text/html", "title": "CC BY-NC 4.0"],
            ["rel": "enclosure", "href": "\(coll)/items/\(p.id)/assets.zip", "type": "application/zip", "title": "every asset and the item in one zip archive"],
        ]
        if var assets = item["assets"] as? [String: Any] {
            for (k, v) in assets {
                guard var a = v as? [String: Any], let href = a["href"] as? String else { continue }
                let file = href.hasPrefix("./") ? String(href.dropFirst(2)) : href
                a["href"] = "\(coll)/items/\(p.id)/assets/\(file)"
                if let size = (try? FileManager.default.attributesOfItem(atPath: (catalogue.folder(p.id) as NSString).appendingPathComponent(file)))?[.size] as? NSNumber {
                    a["file:size"] = size.int64Value
                }
                assets[k] = a
            }
            item["assets"] = assets
        }
        return item
    }

    func stacCollection(base: String) async throws -> [String: Any] {
        let s = try await store.catalogueSummary()
        let coll = "\(base)/stac/collections/\(Catalogue.collectionId)"
        let interval: [Any] = [s.start.map { STACItem.iso($0) as Any } ?? NSNull(), s.end.map { STACItem.iso($0) as Any } ?? NSNull()]
        return [
            "type": "Collection", "stac_version": STACItem.stacVersion, "id": Catalogue.collectionId,
            "title": "DSM-OPT digital surface models",
            "description": "Digital surface models computed by photogrammetry from Pléiades stereo pairs and tri-stereo triplets (images with RPC camera models) with dsmopt, and published by their authors: the DSM (A3), its correlation score (A1), hillshades (B2, B4), true ortho-images (C), quality layers and the run's manifest.",
            "license": Catalogue.license,
            "keywords": ["DSM", "photogrammetry", "Pléiades", "stereo", "elevation"],
            "providers": [
                ["name": "dsmopt service operator", "roles": ["processor", "host"], "description": "computed and hosted the DSMs"],
                ["name": "Airbus DS / CNES", "roles": ["producer", "licensor"], "description": "Pléiades imagery the DSMs were computed from"],
            ],
            "extent": [
                "spatial": ["bbox": [s.bbox ?? [-180, -90, 180, 90]]],
                "temporal": ["interval": [interval]],
            ],
            "summaries": ["constellation": ["pleiades"]],
            "dsmopt:items": s.count,
            "links": [
                ["rel": "self", "href": coll, "type": "application/json"],
                ["rel": "root", "href": "\(base)/stac", "type": "application/json"],
                ["rel": "parent", "href": "\(base)/stac", "type": "application/json"],
                ["rel": "items", "href": "\(coll)/items", "type": "application/geo+json"],
                ["rel": "license", "href": "https://creativecommons.org/licenses/by-nc/4.0/", "type": "text/html", "title": "CC BY-NC 4.0"],
            ],
        ]
    }

    /// Runs a search and returns one page as a FeatureCollection with paging links.
    func searchResponse(_ s: CatalogueSearch, base: String, selfPath: String, method: String) async throws -> Response {
        var features: [[String: Any]] = []
        var more = false
        if let c = s.collections, !c.contains(Catalogue.collectionId) {
            // Another collection: nothing here.
        } else {
            var found = try await store.publications(s.storeQuery)
            if let polys = s.intersects {
                found = found.filter { p in
                    guard let o = try? JSONSerialization.jsonObject(with: Data(p.item.utf8)) as? [String: Any], let r = Footprints.ring(ofItem: o) else { return false }
                    return polys.contains { Footprints.intersects(r, $0) }
                }
                found = Array(found.dropFirst(s.offset).prefix(s.limit + 1))
            }
            more = found.count > s.limit
            features = try found.prefix(s.limit).map { try stacItem($0, base: base) }
        }
        var links: [[String: Any]] = [["rel": "root", "href": "\(base)/stac", "type": "application/json"]]
        if method == "GET" {
            links.append(["rel": "self", "href": "\(base)\(selfPath)?\(s.queryString(token: s.offset == 0 ? nil : s.offset))", "type": "application/geo+json"])
            if more { links.append(["rel": "next", "href": "\(base)\(selfPath)?\(s.queryString(token: s.offset + s.limit))", "type": "application/geo+json", "method": "GET"]) }
            if s.offset > 0 { links.append(["rel": "prev", "href": "\(base)\(selfPath)?\(s.queryString(token: max(0, s.offset - s.limit)))", "type": "application/geo+json", "method": "GET"]) }
        } else {
            links.append(["rel": "self", "href": "\(base)\(selfPath)", "type": "application/geo+json", "method": "POST", "body": s.body(token: s.offset == 0 ? nil : s.offset)])
            if more { links.append(["rel": "next", "href": "\(base)\(selfPath)", "type": "application/geo+json", "method": "POST", "body": s.body(token: s.offset + s.limit), "merge": false]) }
            if s.offset > 0 { links.append(["rel": "prev", "href": "\(base)\(selfPath)", "type": "application/geo+json", "method": "POST", "body": s.body(token: max(0, s.offset - s.limit)), "merge": false]) }
        }
        return try Self.json(["type": "FeatureCollection", "features": features, "links": links, "numberReturned": features.count],
                             contentType: "application/geo+json")
    }

    func queryDictionary(_ request: Request) -> [String: String] {
        var q: [String: String] = [:]
        for (k, v) in request.uri.queryParameters { q[String(k)] = String(v) }
        return q
    }

    func addSTACRoutes(to router: Router<BasicRequestContext>) {
        router.get("/stac") { request, _ in
            _ = try await authenticate(request)
            let base = baseURL(request)
            return try Self.json([
                "type": "Catalog", "stac_version": STACItem.stacVersion, "id": "dsmopt",
                "title": "dsmopt DSM catalogue",
                "description": "Published digital surface models of this dsmopt service (STAC API). Every authenticated user may list and fetch them.",
                "conformsTo": Self.stacConformance,
                "links": [
                    ["rel": "self", "href": "\(base)/stac", "type": "application/json"],
                    ["rel": "root", "href": "\(base)/stac", "type": "application/json"],
                    ["rel": "conformance", "href": "\(base)/stac/conformance", "type": "application/json"],
                    ["rel": "data", "href": "\(base)/stac/collections", "type": "application/json"],
                    ["rel": "child", "href": "\(base)/stac/collections/\(Catalogue.collectionId)", "type": "application/json"],
                    ["rel": "search", "href": "\(base)/stac/search", "type": "application/geo+json", "method": "GET"],
                    ["rel": "search", "href": "\(base)/stac/search", "type": "application/geo+json", "method": "POST"],
                    ["rel": "service-desc", "href": "\(base)/openapi.json", "type": "application/vnd.oai.openapi+json;version=3.1"],
                ],
            ] as [String: Any])
        }
        router.get("/stac/conformance") { request, _ in
            _ = try await authenticate(request)
            return try Self.json(["conformsTo": Self.stacConformance])
        }
        router.get("/stac/collections") { request, _ in
            _ = try await authenticate(request)
            let base = baseURL(request)
            return try Self.json(["collections": [try await stacCollection(base: base)],
                                  "links": [["rel": "self", "href": "\(base)/stac/collections", "type": "application/json"],
                                            ["rel": "root", "href": "\(base)/stac", "type": "application/json"]]] as [String: Any])
        }
        router.get("/stac/collections/:collection") { request, context in
            _ = try await authenticate(request)
            guard context.parameters.get("collection") == Catalogue.collectionId else { throw APIProblem.notFound("no collection \(context.parameters.get("collection") ?? "")") }
            return try Self.json(try await stacCollection(base: baseURL(request)))
        }
        router.get("/stac/collections/:collection/items") { request, context in
            _ = try await authenticate(request)
            guard context.parameters.get("collection") == Catalogue.collectionId else { throw APIProblem.notFound("no collection \(context.parameters.get("collection") ?? "")") }
            let q = queryDictionary(request)
            if let k = q.keys.first(where: { ["ids", "collections", "intersects"].contains($0) }) {
                throw APIProblem.badRequest("\(k) is a parameter of /stac/search, not of a collection's items")
            }
            return try await searchResponse(try CatalogueSearch.parse(query: q), base: baseURL(request),
                                            selfPath: "/stac/collections/\(Catalogue.collectionId)/items", method: "GET")
        }
        router.get("/stac/collections/:collection/items/:id") { request, context in
            _ = try await authenticate(request)
            guard context.parameters.get("collection") == Catalogue.collectionId, let id = context.parameters.get("id"),
                  let p = try await store.publication(id: id) else {
                throw APIProblem.notFound("no published item \(context.parameters.get("id") ?? "") in the catalogue")
            }
            return try Self.json(try stacItem(p, base: baseURL(request)), contentType: "application/geo+json")
        }
        for method in [HTTPRequest.Method.get, .head] {
            router.on("/stac/collections/:collection/items/:id/assets/:file", method: method) { request, context in
                _ = try await authenticate(request)
                guard context.parameters.get("collection") == Catalogue.collectionId, let id = context.parameters.get("id"),
                      try await store.publication(id: id) != nil else {
                    throw APIProblem.notFound("no published item \(context.parameters.get("id") ?? "") in the catalogue")
                }
                return try serveFile(folder: catalogue.folder(id), file: context.parameters.get("file") ?? "", owner: "item \(id)", request: request)
            }
            // Every asset of the item, and the item, in one zip (resumable, as the job's results.zip).
            router.on("/stac/collections/:collection/items/:id/assets.zip", method: method) { request, context in
                _ = try await authenticate(request)
                guard context.parameters.get("collection") == Catalogue.collectionId, let id = context.parameters.get("id"),
                      let p = try await store.publication(id: id) else {
                    throw APIProblem.notFound("no published item \(context.parameters.get("id") ?? "") in the catalogue")
                }
                return try await serveArchive(folder: catalogue.folder(id), files: Self.itemFiles(p), root: "dsmopt-\(id)", request: request)
            }
        }
        router.get("/stac/search") { request, _ in
            _ = try await authenticate(request)
            return try await searchResponse(try CatalogueSearch.parse(query: queryDictionary(request)), base: baseURL(request), selfPath: "/stac/search", method: "GET")
        }
        router.post("/stac/search") { request, _ in
            _ = try await authenticate(request)
            return try await searchResponse(try CatalogueSearch.parse(body: try await body(request, limit: 1 << 20)), base: baseURL(request),
                                            selfPath: "/stac/search", method: "POST")
        }
        // Publishing: the job's owner, an operator or an admin; the item is the job's id.
        router.post("/jobs/:id/publish") { request, context in
            let user = try await authenticate(request)
            let job = try await visibleJob(context.parameters.get("id"), for: user)
            let p: Publication, created: Bool
            do { (p, created) = try await catalogue.publish(job: job, by: user) } catch let e as PublishError {
                switch e {
                case .purged: throw APIProblem(status: .gone, title: "Gone", detail: e.description)
                case .notSuccessful, .noItem: throw APIProblem(status: .conflict, title: "Conflict", detail: e.description)
                case .storage: throw APIProblem.insufficientStorage(e.description)
                }
            }
            let base = baseURL(request)
            return try Self.json(try stacItem(p, base: base), status: created ? .created : .ok, contentType: "application/geo+json",
                                 headers: [.location: "\(base)/stac/collections/\(Catalogue.collectionId)/items/\(p.id)"])
        }
        router.delete("/jobs/:id/publish") { request, context in
            let user = try await authenticate(request)
            // The publication decides (its job record may be gone after the purge).
            guard let id = context.parameters.get("id"), let p = try await store.publication(id: id),
                  p.ownerId == user.id || [.operator, .admin].contains(user.role) else {
                throw APIProblem.notFound("no published item \(context.parameters.get("id") ?? "") of this user")
            }
            _ = try await catalogue.withdraw(id: p.id)
            return Response(status: .noContent)
        }
    }
}
