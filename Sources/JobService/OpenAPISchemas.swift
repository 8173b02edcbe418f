import DSMPipeline
import Foundation

/// Request and response schemas of the OpenAPI document, keyed by "method path" (JSON Schema 2020-12 as
/// OpenAPI 3.1 uses it). Request schemas say what the validators accept; response schemas name the fields
/// clients rely on (more may be added, so objects stay open).
extension OpenAPIDocument {
    typealias Schema = [String: Any]

    /// Operations anyone may call without a token.
    static let publicOperations: Set<String> = [
        "get /", "get /conformance", "get /health", "get /openapi.json", "get /processes", "get /processes/dsm-opt", "get /processes/dsm-difference",
        "get /presets", "get /presets/{name}", "get /crs/{code}", "get /portal/config.json",
    ]
    /// Operations a download link (`DownloadLink`) opens as well as a token.
    static let linkOperations: Set<String> = ["get /jobs/{id}/results/{file}", "get /jobs/{id}/results.zip"]

    static func ref(_ name: String) -> Schema { ["$ref": "#/components/schemas/\(name)"] }
    static var uploadReference: Schema { ["type": "object", "required": ["upload"], "additionalProperties": false,
                                          "properties": ["upload": ["type": "string", "minLength": 1]]] }
    /// A request's `mail` (`ExecutionRequest.mail`).
    static var mail: Schema { ["type": "boolean", "description": "false: no mail about this job; true: a mail is required (422 when the service sends no mail or the caller has no address); default: mailed when the job ends if the caller has an address"] }
    static var presetName: Schema { ["type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$"] }
    static var quotaPatch: Schema { [
        "type": "object", "minProperties": 1, "additionalProperties": false,
        "properties": ["maxConcurrentJobs": ["type": "integer", "minimum": 0, "maximum": 1_000_000],
                       "cpuSecondsPerMonth": ["type": "number", "minimum": 0, "maximum": 1e12],
                       "storageBytes": ["type": "integer", "minimum": 0, "maximum": 1 << 60],
                       "maxInputBytes": ["type": "integer", "minimum": 0, "maximum": 1 << 60]],
    ] }

    static var componentSchemas: [String: Schema] {
        let problem: Schema = ["type": "object", "required": ["type", "title", "status", "detail"],
                               "properties": ["type": ["type": "string"], "title": ["type": "string"], "status": ["type": "integer"],
                                              "detail": ["type": "string"], "limit": ["type": "string"],
                                              "errors": ["type": "array", "items": ["type": "object", "required": ["field", "message"],
                                                                                    "properties": ["field": ["type": "string"], "message": ["type": "string"]]]]]]
        let link: Schema = ["type": "object", "required": ["href"], "properties": ["href": ["type": "string"], "rel": ["type": "string"], "type": ["type": "string"],
                                                                                   "title": ["type": "string"]]]
        let delivery: Schema = ["type": "object", "required": ["state", "attempts"],
                                "properties": ["state": ["type": "string", "enum": ["pending", "delivered", "failed", "skipped"]],
                                               "attempts": ["type": "integer"], "error": ["type": "string"], "nextAttempt": ["type": "string"]]]
        // A callback's delivery names the subscriber's URIs too.
        var callback = delivery
        callback["properties"] = (delivery["properties"] as? Schema ?? [:]).merging(["successUri": ["type": "string"], "failedUri": ["type": "string"]]) { a, _ in a }
        let job: Schema = ["type": "object", "required": ["jobID", "status", "progress", "created", "links"],
                           "properties": ["jobID": ["type": "string"], "processID": ["type": "string"], "name": ["type": "string"],
                                          "owner": ["type": "string"], "ownerName": ["type": "string"], "requestedMail": ["type": "boolean"],
                                          "status": ["type": "string", "enum": ["accepted", "running", "successful", "failed", "dismissed"]],
                                          "progress": ["type": "integer", "minimum": 0, "maximum": 100], "stage": ["type": "string"],
                                          "created": ["type": "string"], "started": ["type": "string"], "finished": ["type": "string"],
                                          "purgeDate": ["type": "string"], "purgeReminder": ["type": "string"], "resultsPurged": ["type": "boolean"], "cpuSeconds": ["type": "number"], "attempts": ["type": "integer"],
                                          "preset": ["type": "string"], "error": ["type": "string"], "links": ["type": "array", "items": ref("Link")],
                                          "callback": callback,
                                          "mail": delivery, "reminder": delivery]]
        let upload: Schema = ["type": "object", "required": ["id", "fileName", "size", "sha256"],
                              "properties": ["id": ["type": "string"], "fileName": ["type": "string"], "size": ["type": "integer"],
                                             "sha256": ["type": "string", "pattern": "^[0-9a-f]{64}$"],
                                             "kind": ["type": "string", "enum": ["tiff", "jpeg2000", "zip", "xml", "geojson"],
                                                      "description": "what the file is, by its first bytes; geojson: a water mask, not an image"]]]
        let quota: Schema = ["type": "object", "required": ["maxConcurrentJobs", "cpuSecondsPerMonth", "storageBytes", "maxInputBytes"],
                             "properties": ["maxConcurrentJobs": ["type": "integer"], "cpuSecondsPerMonth": ["type": "number"],
                                            "storageBytes": ["type": "integer"], "maxInputBytes": ["type": "integer"]]]
        let usage: Schema = ["type": "object", "required": ["activeJobs", "cpuSecondsThisMonth", "storageBytes"],
                             "properties": ["activeJobs": ["type": "integer"], "cpuSecondsThisMonth": ["type": "number"], "storageBytes": ["type": "integer"]]]
        let imageRef: Schema = ["type": "object", "required": ["upload"], "additionalProperties": false,
                                "properties": ["upload": ["type": "string", "minLength": 1],
                                               "image": ["type": "integer", "minimum": 1, "maximum": 3,
                                                         "description": "which image of a zipped delivery (1-based); without it, all of them"]]]
        let execution: Schema = [
            "type": "object", "required": ["images"], "additionalProperties": false,
            "properties": ["name": ["type": "string", "minLength": 1, "maxLength": 200],
                           "images": ["type": "array", "minItems": 1, "maxItems": 3, "items": imageRef,
                                      "description": "2 or 3 images; one upload of a zipped delivery stands for all its views"],
                           "preset": ["type": "string", "description": "a preset name (GET /presets)"],
                           "parameters": ref("JobParameters"),
                           "referenceDem": uploadReference, "waterMask": uploadReference, "multispectral": uploadReference,
                           "publish": ["type": "boolean", "description": "publish the products in the DSM catalogue when the job succeeds"],
                           "mail": mail, "subscriber": subscriber],
        ]
        let subscriber = Self.subscriber
        let dsmReference: Schema = ["type": "object", "minProperties": 1, "maxProperties": 1, "additionalProperties": false,
                                    "properties": ["job": ["type": "string"], "item": ["type": "string"], "upload": ["type": "string"]]]
        let difference: Schema = [
            "type": "object", "required": ["dsms"], "additionalProperties": false,
            "properties": ["name": ["type": "string", "minLength": 1, "maxLength": 200],
                           "dsms": ["type": "array", "minItems": 2, "maxItems": 2, "items": dsmReference, "description": "the earlier DSM, then the later"],
                           "aoi": ["description": "\"minLon,minLat,maxLon,maxLat\" or a GeoJSON Polygon/Feature", "oneOf": [["type": "string"], ["type": "object"]]],
                           "stableMask": uploadReference, "changedMask": uploadReference, "publish": ["type": "boolean"], "mail": mail, "subscriber": subscriber],
        ]
        let search: Schema = [
            "type": "object", "additionalProperties": false,
            "properties": ["bbox": ["type": "array", "items": ["type": "number"], "minItems": 4, "maxItems": 6],
                           "intersects": ["type": "object"], "datetime": ["type": "string"],
                           "ids": ["type": "array", "items": ["type": "string"]], "collections": ["type": "array", "items": ["type": "string"]],
                           "limit": ["type": "integer", "minimum": 1, "maximum": 1000], "token": ["type": "string"]],
        ]
        let inspection: Schema = ["type": "object", "required": ["images"], "additionalProperties": false,
                                  "properties": ["images": ["type": "array", "minItems": 1, "maxItems": 3, "items": imageRef]]]
        let newUser: Schema = ["type": "object", "required": ["name", "role"],
                               "properties": ["name": ["type": "string", "minLength": 1, "maxLength": User.maximumNameLength, "pattern": User.namePattern],
                                              "role": ["type": "string", "enum": ["researcher", "operator", "admin", "catalogue"]],
                                              "quota": quota, "email": ["type": "string", "format": "email", "maxLength": 254]]]
        var expert: [String: Any] = [:]
        var options: [String: Any] = [:]
        for s in JobParameterTable.specs {
            if s.group == .expert { expert[s.key] = ProcessDescription.schema(s) } else if Preset.optionKeys.contains(s.key) {
                options[s.key] = ProcessDescription.schema(s)
            }
        }
        let preset: Schema = ["type": "object", "required": ["description"], "additionalProperties": false,
                              "properties": ["name": ["type": "string", "description": "ignored in a PUT: the path names the preset"], "description": ["type": "string", "minLength": 1, "maxLength": 500],
                                             "resolution-factor": ProcessDescription.schema(JobParameterTable.spec("resolution-factor")!),
                                             "parameters": ["type": "object", "additionalProperties": false, "properties": expert],
                                             "options": ["type": "object", "additionalProperties": false, "properties": options]]]
        return ["Problem": problem, "Link": link, "Job": job, "Upload": upload, "Quota": quota, "Usage": usage,
                "ExecutionRequest": execution, "InspectionRequest": inspection, "NewUser": newUser, "Preset": preset,
                "QuotaPatch": quotaPatch, "JobParameters": parametersSchema, "DifferenceRequest": difference, "SearchRequest": search]
    }

    /// A job's subscriber (OGC callbacks, `Subscriber`): URIs the outcome is POSTed to when the job ends.
    static var subscriber: Schema {
        ["type": "object", "minProperties": 1, "additionalProperties": false,
         "description": "POSTed when the job ends: its results document to successUri, its status to failedUri (failed or dismissed)",
         "properties": ["successUri": ["type": "string", "format": "uri", "pattern": "^https?://"],
                        "failedUri": ["type": "string", "format": "uri", "pattern": "^https?://"]]]
    }

    /// An OGC API – Processes execute request around a process's inputs (`ExecuteEnvelope`): outputs by reference
    /// only, results as a document, callbacks on success and failure (`subscriber`).
    static func executeEnvelope(_ inputs: Schema) -> Schema {
        ["type": "object", "required": ["inputs"], "additionalProperties": false,
         "properties": ["inputs": inputs,
                        "outputs": ["type": "object", "additionalProperties": ["type": "object", "properties": ["transmissionMode": ["const": "reference"]]]],
                        "response": ["const": "document"], "subscriber": subscriber]]
    }

    /// Request body of an operation.
    static func requestBody(_ key: String) -> Schema? {
        func json(_ s: Schema) -> Schema { ["required": true, "content": ["application/json": ["schema": s]]] }
        switch key {
        case "post /uploads":
            return ["required": true, "description": "the file's raw bytes: a TIFF/BigTIFF, JPEG2000, zip of a product or delivery, DIMAP XML, or GeoJSON",
                    "content": ["application/octet-stream": ["schema": ["type": "string", "format": "binary", "minLength": 1]]]]
        case "post /processes/dsm-opt/execution": return json(["oneOf": [ref("ExecutionRequest"), executeEnvelope(ref("ExecutionRequest"))]])
        case "post /processes/dsm-opt/inspection": return json(ref("InspectionRequest"))
        case "post /processes/dsm-difference/execution": return json(["oneOf": [ref("DifferenceRequest"), executeEnvelope(ref("DifferenceRequest"))]])
        case "post /stac/search": return json(ref("SearchRequest"))
        case "post /admin/users": return json(ref("NewUser"))
        case "put /me/email": return json(["type": "object", "required": ["email"], "additionalProperties": false,
                                           "properties": ["email": ["type": "string", "format": "email", "maxLength": 254]]])
        case "put /admin/users/{id}/quota": return json(ref("QuotaPatch"))
        case "post /jobs/{id}/download-links":
            return ["required": false, "description": "empty for links valid a day",
                    "content": ["application/json": ["schema": ["type": "object", "additionalProperties": false, "properties": [
                        "expiresIn": ["type": "integer", "minimum": 60, "maximum": DownloadLink.maxSeconds, "description": "seconds from now"]]]]]]
        case "put /presets/{name}": return json(ref("Preset"))
        case "post /catalogue/jobs":
            var s = componentSchemas["ExecutionRequest"]!
            var props = s["properties"] as! [String: Any]
            props["user"] = ["type": "string", "minLength": 1]
            props["images"] = ["type": "array", "minItems": 2, "maxItems": 3,
                               "items": ["type": "object", "additionalProperties": false,
                                         "properties": ["url": ["type": "string", "format": "uri"], "path": ["type": "string"]]]]
            s["properties"] = props
            s["required"] = ["user", "images"]
            return json(s)
        default: return nil
        }
    }

    /// An RFC 3339 date-time, or an interval of two with `..` or nothing for an open end (`DateTimeInterval`).
    static let dateTimeOrInterval: String = {
        let t = #"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?(Z|[+-][0-9]{2}:[0-9]{2})"#
        return "^(\(t)|(\(t)|\\.\\.)?/(\(t)|\\.\\.)?)$"
    }()

    /// Query parameters of an operation.
    static func queryParameters(_ key: String) -> [Schema] {
        func q(_ name: String, _ schema: Schema, required: Bool = false) -> Schema { ["name": name, "in": "query", "required": required, "schema": schema] }
        switch key {
        case "get /": return [q("f", ["type": "string", "enum": ["json", "html"]])]
        case "post /uploads": return [q("name", ["type": "string", "pattern": "^[A-Za-z0-9_-][A-Za-z0-9._-]{0,199}$"])]
        case "get /jobs": return [q("limit", ["type": "integer", "minimum": -9_007_199_254_740_991, "maximum": 9_007_199_254_740_991, "description": "page size, clamped to 1–200 (default 20)"]),
                                  q("offset", ["type": "integer", "minimum": -9_007_199_254_740_991, "maximum": 9_007_199_254_740_991, "description": "clamped to 0–2^40"]),
                                  q("all", ["type": "string", "enum": ["true", "false"], "description": "every user's jobs (operators and admins)"]),
                                  // OGC API – Processes job list filters (repeated or comma-separated values).
                                  q("type", ["type": "array", "items": ["type": "string", "enum": ["process"]]]),
                                  q("processID", ["type": "array", "items": ["type": "string"]]),
                                  q("status", ["type": "array", "items": ["type": "string", "enum": JobStatus.allCases.map(\.rawValue)]]),
                                  q("datetime", ["type": "string", "pattern": dateTimeOrInterval,
                                                    "description": "created at an RFC 3339 date-time or within an interval start/end (.. for open)"]),
                                  q("minDuration", ["type": "integer", "minimum": 0, "maximum": 1 << 40, "description": "seconds from start to finish (or now); jobs not started are left out"]),
                                  q("maxDuration", ["type": "integer", "minimum": 0, "maximum": 1 << 40, "description": "seconds from start to finish (or now); jobs not started are left out"])]
        case "get /stac/search", "get /stac/collections/{collection}/items":
            var p = [q("bbox", ["type": "string", "description": "minLon,minLat,maxLon,maxLat"]),
                     q("datetime", ["type": "string", "description": "RFC 3339 date-time or interval start/end (.. for open)"]),
                     q("limit", ["type": "integer", "minimum": 1, "maximum": 1000]), q("token", ["type": "string"])]
            if key == "get /stac/search" {
                p += [q("ids", ["type": "string"]), q("collections", ["type": "string"]), q("intersects", ["type": "string", "description": "a GeoJSON geometry"])]
            }
            return p
        case "get /jobs/{id}/results/{file}", "get /jobs/{id}/results.zip":
            // A download link (`POST /jobs/{id}/download-links`): the three together, in place of a token.
            return [q("user", ["type": "string", "description": "download link: the user who signed it"]),
                    q("expires", ["type": "integer", "description": "download link: its expiry, Unix seconds"]),
                    q("signature", ["type": "string", "description": "download link: its signature"])]
        case "get /jobs/{id}/probe": return [q("lon", ["type": "number", "minimum": -180, "maximum": 180], required: true),
                                             q("lat", ["type": "number", "minimum": -90, "maximum": 90], required: true)]
        default: return []
        }
    }

    /// Schema of a path parameter.
    static func pathParameter(_ name: String) -> Schema {
        switch name {
        case "name": return presetName
        case "code": return ["type": "integer", "minimum": 1024, "maximum": 32767]
        case "z": return ["type": "integer", "minimum": 0, "maximum": 24]
        case "x": return ["type": "integer", "minimum": 0]
        case "y": return ["type": "string", "pattern": "^[0-9]+\\.png$"]
        default: return ["type": "string", "minLength": 1]
        }
    }

    /// Media types and schemas of an operation's success answer.
    static func success(_ key: String, _ code: Int) -> Schema {
        func json(_ s: Schema) -> Schema { ["application/json": ["schema": s]] }
        let object: Schema = ["type": "object"]
        switch (key, code) {
        case ("get /metrics", _), ("get /jobs/{id}/logs", _): return ["text/plain": ["schema": ["type": "string"]]]
        case ("get /", _): return json(["type": "object", "required": ["links"], "properties": ["links": ["type": "array", "items": ref("Link")]]])
                                   .merging(["text/html": ["schema": ["type": "string"]]]) { a, _ in a }
        case ("get /conformance", _): return json(["type": "object", "required": ["conformsTo"], "properties": ["conformsTo": ["type": "array", "items": ["type": "string"]]]])
        case ("get /jobs/{id}/results", _):
            // OGC API – Processes' results document: output name → link, or one link per file (orthos).
            return json(["type": "object", "additionalProperties": ["oneOf": [ref("Link"), ["type": "array", "items": ref("Link")]]]])
        case ("get /jobs/{id}/results/{file}", _), ("get /stac/collections/{collection}/items/{id}/assets/{file}", _):
            let binary: Schema = ["schema": ["type": "string", "format": "binary"]]
            return [STACItem.cogType: binary, "image/png": binary, "application/json": ["schema": object], "application/vnd.las": binary]
        case ("get /stac/search", _), ("post /stac/search", _), ("get /stac/collections/{collection}/items", _):
            return ["application/geo+json": ["schema": ["type": "object", "required": ["type", "features", "links"]]]]
        case ("get /stac/collections/{collection}/items/{id}", _), ("post /jobs/{id}/publish", _):
            return ["application/geo+json": ["schema": ["type": "object", "required": ["type", "id", "assets"]]]]
        case ("post /jobs/{id}/download-links", _):
            return json(["type": "object", "required": ["expires", "query", "archive", "results"],
                         "properties": ["expires": ["type": "string", "format": "date-time"],
                                        "query": ["type": "string", "description": "what signs: add it to the address of any of the job's results"],
                                        "archive": ["type": "string", "format": "uri", "description": "the results' zip, signed"],
                                        "results": ["type": "object", "description": "the results document, each href signed",
                                                    "additionalProperties": ["oneOf": [ref("Link"), ["type": "array", "items": ref("Link")]]]]]])
        case ("get /jobs/{id}/results.zip", _), ("get /stac/collections/{collection}/items/{id}/assets.zip", _): return ["application/zip": ["schema": ["type": "string", "format": "binary"]]]
        case ("get /jobs/{id}/tiles/{layer}/{z}/{x}/{y}", 200): return ["image/png": ["schema": ["type": "string", "format": "binary"]]]
        case (_, 204): return [:]
        case ("get /jobs", _): return json(["type": "object", "required": ["jobs", "total", "limit", "offset", "links"],
                                            "properties": ["jobs": ["type": "array", "items": ref("Job")], "total": ["type": "integer"],
                                                           "limit": ["type": "integer"], "offset": ["type": "integer"], "links": ["type": "array", "items": ref("Link")]]])
        case ("get /jobs/{id}", _), ("delete /jobs/{id}", _), ("post /processes/dsm-opt/execution", _), ("post /catalogue/jobs", _),
             ("post /processes/dsm-difference/execution", _): return json(ref("Job"))
        case ("post /uploads", _), ("get /uploads/{id}", _): return json(ref("Upload"))
        case ("get /uploads", _): return json(["type": "object", "required": ["uploads"], "properties": ["uploads": ["type": "array", "items": ref("Upload")]]])
        case ("get /admin/users", _): return json(["type": "array", "items": ["type": "object", "required": ["id", "name", "role", "quota", "usage"]]])
        case ("get /presets", _): return json(["type": "array", "items": ref("Preset")])
        case ("get /presets/{name}", _), ("put /presets/{name}", _): return json(ref("Preset"))
        case ("get /me", _): return json(["type": "object", "required": ["id", "name", "role", "quota", "usage"],
                                          "properties": ["id": ["type": "string"], "name": ["type": "string"], "role": ["type": "string"],
                                                         "quota": ref("Quota"), "usage": ref("Usage"), "email": ["type": "string"],
                                                         "mailConfigured": ["type": "boolean"]]])
        case ("put /me/email", _): return json(["type": "object", "required": ["email", "mailConfigured"],
                                                "properties": ["email": ["type": "string"], "mailConfigured": ["type": "boolean"]]])
        default: return json(object)
        }
    }

    /// The whole document as a JSON object.
    static var document: [String: Any] {
        var paths: [String: [String: Any]] = [:]
        for r in routes {
            let key = "\(r.method) \(r.path)"
            var parameters: [Schema] = r.path.split(separator: "/").filter { $0.hasPrefix("{") }.map {
                let name = String($0.dropFirst().dropLast())
                return ["name": name, "in": "path", "required": true, "schema": pathParameter(name)]
            }
            parameters += queryParameters(key)
            var responses: [String: Any] = [:]
            for code in r.responses {
                if code >= 400 {
                    responses["\(code)"] = ["description": "\(code)", "content": ["application/problem+json": ["schema": ref("Problem")]]]
                } else {
                    let content = success(key, code)
                    responses["\(code)"] = content.isEmpty ? ["description": "\(code)"] : ["description": "\(code)", "content": content]
                }
            }
            var op: [String: Any] = ["summary": r.summary, "parameters": parameters, "responses": responses]
            if let body = requestBody(key) { op["requestBody"] = body }
            op["security"] = publicOperations.contains(key) ? [] as [Any]
                : linkOperations.contains(key) ? [["bearer": [] as [Any]], ["downloadLink": [] as [Any]]] : [["bearer": [] as [Any]]]
            paths[r.path, default: [:]][r.method] = op
        }
        return ["openapi": "3.1.0",
                "info": ["title": "dsmopt", "version": "1.0", "description": "Stereo-photogrammetry DSM service (OGC API – Processes job semantics)."],
                "components": ["securitySchemes": ["bearer": ["type": "http", "scheme": "bearer"],
                                                   "downloadLink": ["type": "apiKey", "in": "query", "name": "signature",
                                                                    "description": "a download link's query (user, expires, signature), from POST /jobs/{id}/download-links"]],
                               "schemas": componentSchemas],
                "paths": paths]
    }
}
