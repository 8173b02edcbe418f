import DSMCore
import DSMPipeline
import Foundation

/// The OpenAPI 3.1 description of the served API (`GET /openapi.json`). `routes` is the list the test
/// suite checks against the running server.
public enum OpenAPIDocument {
    public struct Route: Sendable { public var method: String; public var path: String; public var summary: String; public var responses: [Int] }

    /// The methods served on a concrete path (route patterns' `{x}` match one segment); GET routes also answer HEAD
    /// where the router serves it (downloads).
    public static func methods(forPath path: String) -> [String] {
        let parts = path.split(separator: "/", omittingEmptySubsequences: true)
        var out: [String] = []
        for r in routes {
            let pattern = r.path.split(separator: "/", omittingEmptySubsequences: true)
            guard pattern.count == parts.count else { continue }
            if zip(pattern, parts).allSatisfy({ $0.hasPrefix("{") || $0 == $1 }) {
                let m = r.method.uppercased()
                if !out.contains(m) { out.append(m) }
                if m == "GET", r.path.hasPrefix("/jobs/{id}/results/") || r.path.hasSuffix(".zip") || r.path.hasSuffix("/assets/{file}"), !out.contains("HEAD") { out.append("HEAD") }
            }
        }
        return out
    }

    public static let routes: [Route] = [
        .init(method: "get", path: "/", summary: "Landing page (JSON; a browser asking for text/html, or ?f=html, gets the web portal)", responses: [200, 400]),
        .init(method: "get", path: "/conformance", summary: "OGC API conformance classes", responses: [200]),
        .init(method: "get", path: "/health", summary: "Liveness", responses: [200]),
        .init(method: "get", path: "/metrics", summary: "Prometheus metrics: jobs by state, queue length, stage durations, HTTP latencies (operators and admins, unless metricsPublic)", responses: [200, 401, 403]),
        .init(method: "get", path: "/openapi.json", summary: "This document", responses: [200]),
        .init(method: "get", path: "/processes", summary: "List of processes (OGC API – Processes)", responses: [200]),
        .init(method: "get", path: "/processes/dsm-opt", summary: "The DSM process: inputs, parameters with ranges and defaults, presets, outputs", responses: [200]),
        .init(method: "post", path: "/processes/dsm-opt/execution", summary: "Create a job (201, Location: /jobs/{id}); 422 lists every invalid field; 429/403 over quota", responses: [201, 401, 403, 413, 422, 429]),
        .init(method: "post", path: "/uploads", summary: "Stream an image (or a GeoJSON water mask, a reference DEM) to disk (?name=FILE); returns id, size, SHA-256; 413 above the size limit, 415 not a known kind", responses: [201, 400, 401, 403, 413, 415]),
        .init(method: "get", path: "/uploads", summary: "The caller's uploads, newest first: id, name, size, SHA-256, and what was read from each image once described", responses: [200, 401]),
        .init(method: "get", path: "/uploads/{id}", summary: "One upload and what is read from it (size, RPC source, GSD, angles, acquisition, footprint)", responses: [200, 401, 404]),
        .init(method: "post", path: "/processes/dsm-opt/inspection", summary: "Inspect 2–3 uploads as dsmopt inspect does (images, B/H, convergence, overlap, selected pairs and why) without queuing a job", responses: [200, 401, 413, 422]),
        .init(method: "delete", path: "/uploads/{id}", summary: "Delete one of the caller's uploads (409 while a queued or running job uses it)", responses: [204, 401, 404, 409]),
        .init(method: "get", path: "/jobs", summary: "The caller's jobs, newest first (?limit, ?offset; ?all=true for operators; OGC job list filters ?type, ?processID, ?status, ?datetime of creation, ?minDuration, ?maxDuration in seconds)", responses: [200, 400, 401]),
        .init(method: "get", path: "/jobs/{id}", summary: "Job status: accepted | running | successful | failed | dismissed, progress, stage, times, purge date, error", responses: [200, 401, 404]),
        .init(method: "delete", path: "/jobs/{id}", summary: "Cancel a queued or running job (202), or delete a finished one and its results (200)", responses: [200, 202, 401, 404]),
        .init(method: "get", path: "/jobs/{id}/results", summary: "The results document (OGC API – Processes): each output's name → a link to its file (orthos: one per image); 404 with type result-not-ready while the job runs", responses: [200, 401, 404, 410]),
        .init(method: "post", path: "/jobs/{id}/download-links", summary: "Links to the job's results that need no token until a date (body {\"expiresIn\": seconds}, 60 s to 30 days, default a day; never past the purge), signed by the caller: rotating or revoking their token voids them", responses: [201, 400, 401, 404, 410, 413, 422]),
        .init(method: "get", path: "/jobs/{id}/results/{file}", summary: "Download a product (HTTP Range, ETag and If-None-Match supported), with a token or a download link's query; manifest.json is served with each product's link (href) and size, the job's id and purge date", responses: [200, 206, 304, 401, 403, 404, 410, 416]),
        .init(method: "get", path: "/jobs/{id}/results.zip", summary: "Every file of the results document in one zip archive (stored, ZIP64 past 4 GiB; Content-Length, HTTP Range, ETag and If-Range: a download resumes), with a token or a download link's query", responses: [200, 206, 304, 401, 403, 404, 410, 416]),
        .init(method: "get", path: "/jobs/{id}/map", summary: "Map layers of a finished job's products, the DSM's footprint and bounds (WGS84)", responses: [200, 401, 404, 410]),
        .init(method: "get", path: "/jobs/{id}/tiles/{layer}/legend", summary: "Colour range and ramp of a map layer", responses: [200, 401, 404, 410]),
        .init(method: "get", path: "/jobs/{id}/tiles/{layer}/{z}/{x}/{y}", summary: "Web Mercator map tile ({y}.png) rendered from the product's COG (204 where it has no data)", responses: [200, 204, 401, 404, 410]),
        .init(method: "get", path: "/jobs/{id}/probe", summary: "Height and correlation score at ?lon=&lat= (WGS84)", responses: [200, 401, 404, 410, 422]),
        .init(method: "get", path: "/crs/{code}", summary: "Name of an EPSG coordinate reference system", responses: [200, 404, 422]),
        .init(method: "get", path: "/portal/config.json", summary: "The web portal's settings (basemap, upload limit)", responses: [200]),
        .init(method: "get", path: "/jobs/{id}/logs", summary: "The job's pipeline log", responses: [200, 401, 404]),
        .init(method: "get", path: "/presets", summary: "Landscape presets", responses: [200]),
        .init(method: "get", path: "/presets/{name}", summary: "One preset (503 while its file in the data folder is invalid: the other presets stay usable)", responses: [200, 404, 503]),
        .init(method: "put", path: "/presets/{name}", summary: "Create or update a preset (operators), validated like user parameters", responses: [200, 201, 400, 401, 403, 413, 422]),
        .init(method: "get", path: "/me", summary: "The caller's quota limits, current usage and email address (mail on each job's end), and whether the service sends mail", responses: [200, 401]),
        .init(method: "put", path: "/me/email", summary: "Set the address mail about the caller's jobs goes to: each job submitted from then on is mailed about when it succeeds or fails", responses: [200, 401, 413, 422]),
        .init(method: "delete", path: "/me/email", summary: "Remove the caller's address: no more mail", responses: [204, 401]),
        .init(method: "get", path: "/admin/users", summary: "Users with quotas and usage (admins)", responses: [200, 401, 403]),
        .init(method: "post", path: "/admin/users", summary: "Create a user; returns its token once (admins)", responses: [201, 401, 403, 409, 413, 422]),
        .init(method: "put", path: "/admin/users/{id}/quota", summary: "Set a user's quota (admins)", responses: [200, 401, 403, 404, 413, 422]),
        .init(method: "post", path: "/admin/users/{id}/token", summary: "Rotate a user's token: returns the new one once; the old one is refused at once (admins)", responses: [201, 401, 403, 404]),
        .init(method: "delete", path: "/admin/users/{id}/token", summary: "Revoke a user's token (admins)", responses: [204, 401, 403, 404]),
        .init(method: "post", path: "/me/token", summary: "Rotate the caller's own token: returns the new one once", responses: [201, 401]),
        .init(method: "get", path: "/me/callback-secret", summary: "The caller's callback signing secret (whsec_…, Standard Webhooks v1: webhook-id, webhook-timestamp, webhook-signature headers), created on first use", responses: [200, 401]),
        .init(method: "post", path: "/me/callback-secret", summary: "Replace the caller's callback signing secret: callbacks sent from now on are signed with the new one, and with the replaced one too until previousSecretSignsUntil (callbackSecretGraceSeconds)", responses: [201, 401]),
        .init(method: "get", path: "/processes/dsm-difference", summary: "The difference process: inputs (two DSMs of two dates), outputs, the volume uncertainty formula", responses: [200]),
        .init(method: "post", path: "/processes/dsm-difference/execution", summary: "Create a difference job from two DSMs (jobs, catalogue items or uploads) (201, Location: /jobs/{id}); 422 lists every invalid field", responses: [201, 401, 403, 413, 422, 429]),
        .init(method: "post", path: "/jobs/{id}/publish", summary: "Publish a successful job's products in the DSM catalogue (owner, operators, admins): 201 with the STAC item, 200 if already published", responses: [200, 201, 401, 404, 409, 410]),
        .init(method: "delete", path: "/jobs/{id}/publish", summary: "Withdraw a published item and its files (its owner, operators, admins)", responses: [204, 401, 404]),
        .init(method: "get", path: "/stac", summary: "STAC API landing page of the DSM catalogue", responses: [200, 401]),
        .init(method: "get", path: "/stac/conformance", summary: "STAC API conformance classes", responses: [200, 401]),
        .init(method: "get", path: "/stac/collections", summary: "The catalogue's collections (dsm-opt)", responses: [200, 401]),
        .init(method: "get", path: "/stac/collections/{collection}", summary: "The dsm-opt collection: licence, providers, extent kept up to date", responses: [200, 401, 404]),
        .init(method: "get", path: "/stac/collections/{collection}/items", summary: "Published items (?bbox, ?datetime, ?limit, ?token), newest acquisition first", responses: [200, 400, 401, 404]),
        .init(method: "get", path: "/stac/collections/{collection}/items/{id}", summary: "One published item", responses: [200, 401, 404]),
        .init(method: "get", path: "/stac/collections/{collection}/items/{id}/assets/{file}", summary: "Download an asset of a published item (HTTP Range supported: COG streaming; ETag and If-None-Match)", responses: [200, 206, 304, 401, 404, 416]),
        .init(method: "get", path: "/stac/collections/{collection}/items/{id}/assets.zip", summary: "Every asset of a published item, and the item, in one zip archive (as /jobs/{id}/results.zip: Content-Length, Range, ETag, If-Range)", responses: [200, 206, 304, 401, 404, 416]),
        .init(method: "get", path: "/stac/search", summary: "Item search: ?bbox, ?intersects, ?datetime, ?ids, ?collections, ?limit, ?token", responses: [200, 400, 401]),
        .init(method: "post", path: "/stac/search", summary: "Item search with a JSON body (bbox, intersects, datetime, ids, collections, limit, token)", responses: [200, 400, 401, 413]),
        .init(method: "post", path: "/catalogue/jobs", summary: "Catalogue forwarding: create a job for a named user from image URLs or archive paths (catalogue accounts)", responses: [201, 401, 403, 413, 422, 429]),
    ]

    /// Built once: the routes and the parameter table do not change while the daemon runs.
    public static let json: String = json(server: nil)

    /// The document with `servers` naming the service's public URL (configured behind a proxy that adds a
    /// path prefix: without `servers`, OpenAPI clients resolve the paths against the host's root).
    static func json(server: String?) -> String {
        var d = document
        if let server { d["servers"] = [["url": server, "description": "this service"]] }
        let data = (try? JSONSerialization.data(withJSONObject: d, options: [.sortedKeys, .withoutEscapingSlashes])) ?? Data("{}".utf8)
        return String(decoding: data, as: UTF8.self)
    }

    /// JSON Schema of an execution request's `parameters`, from the parameter table.
    static var parametersSchema: [String: Any] {
        var props: [String: Any] = [
            "roi": ["type": "array", "items": ["type": "integer", "minimum": 0], "minItems": 4, "maxItems": 4,
                    "description": "region of the first image: col, row, width, height"],
            "aoi": ["description": "area of interest: \"minLon,minLat,maxLon,maxLat\" or a GeoJSON Polygon/Feature (inline)",
                    "oneOf": [["type": "string"], ["type": "object"]]],
        ]
        for spec in JobParameterTable.specs { props[spec.key] = ProcessDescription.schema(spec) }
        return ["type": "object", "additionalProperties": false, "properties": props]
    }
}
