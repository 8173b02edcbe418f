import Foundation

/// OGC API – Processes 1.0 execute requests: `{"inputs": {…}, "outputs"?, "response"?}` around the fields the
/// process description lists as its inputs. Both execution routes also take those fields flat (the form the
/// README's examples use); `flattened` turns the standard form into the flat one, so that one validator reads
/// both and its field names (`images[1]`, `parameters.window`) are the inputs' own.
enum ExecuteEnvelope {
    /// The flat request of an execute request in the standard form; any other body unchanged (the validators
    /// report what is wrong with it). An input may be given as its value or as a qualified value
    /// (`{"value": …, "mediaType"?: …}`). Every output is returned by reference in a document of links, so
    /// `outputs` may select nothing else, and `response` may only be `document`. `subscriber` (callbacks) is kept
    /// as the flat request's field of that name (`Subscriber`).
    static func flattened(_ body: Data) throws -> Data {
        guard let root = try? JSONSerialization.jsonObject(with: body), let object = root as? [String: Any],
              let inputs = object["inputs"] else { return body }
        var errors: [FieldError] = []
        for key in object.keys.sorted() where key != "inputs" {
            let value = object[key]!
            switch key {
            case "outputs":
                guard let outputs = value as? [String: Any] else { errors.append(.init(field: "outputs", message: "must be an object")); continue }
                for (name, selection) in outputs.sorted(by: { $0.key < $1.key }) {
                    guard let s = selection as? [String: Any] else { errors.append(.init(field: "outputs.\(name)", message: "must be an object")); continue }
                    if let mode = s["transmissionMode"], mode as? String != "reference" {
                        errors.append(.init(field: "outputs.\(name).transmissionMode", message: "outputs are returned by reference only"))
                    }
                }
            case "response":
                if value as? String != "document" {
                    errors.append(.init(field: "response", message: "must be \"document\": results are a document of links to the products"))
                }
            case "subscriber":
                break
            default:
                errors.append(.init(field: key, message: "unknown field (an execute request holds inputs, outputs and response)"))
            }
        }
        guard let fields = inputs as? [String: Any] else {
            errors.append(.init(field: "inputs", message: "must be an object of the process's inputs"))
            throw APIProblem.invalid(errors)
        }
        if fields["subscriber"] != nil {
            errors.append(.init(field: "inputs.subscriber", message: "not an input of the process: subscriber goes beside inputs"))
        }
        guard errors.isEmpty else { throw APIProblem.invalid(errors) }
        var flat: [String: Any] = [:]
        if let subscriber = object["subscriber"] { flat["subscriber"] = subscriber }
        for (name, value) in fields {
            if let q = value as? [String: Any], q["value"] != nil, Set(q.keys).isSubset(of: ["value", "mediaType", "encoding", "schema"]) {
                flat[name] = q["value"]
            } else {
                flat[name] = value
            }
        }
        return try JSONSerialization.data(withJSONObject: flat)
    }
}
