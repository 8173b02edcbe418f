import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif

/// The text of every leaf element of an XML document with its element path ("A/B/C"), in document order.
/// Enough for DIMAP metadata, whose values all sit in leaf elements.
struct XMLLeaves {
    struct Leaf {
        let path: [String]
        let text: String
        /// Attributes of each element of `path`.
        let attributes: [[String: String]]
    }
    let leaves: [Leaf]

    init(data: Data, file: String) throws {
        let collector = Collector()
        let parser = XMLParser(data: data)
        parser.delegate = collector
        guard parser.parse() else {
            // Foundation describes a parser error as "The operation could not be completed. (… error 89.)":
            // the code, in words for the ones met here, and where the parser stopped say more.
            let code = (parser.parserError as NSError?)?.code
            let words: [Int: String] = [5: "the document ends before its elements close", 76: "a closing tag does not match the open element",
                                        89: "entities that loop or expand too far (an entity bomb)"]
            let what = code.map { c in words[c].map { "\($0), XML parser error \(c)" } ?? "XML parser error \(c)" } ?? "unknown error"
            throw IngestError.malformed(file: file, reason: "not well-formed XML (\(what); the parser stopped at line \(parser.lineNumber), column \(parser.columnNumber))")
        }
        leaves = collector.leaves
    }

    /// First leaf whose path ends with `suffix` (element names, last one is the leaf).
    func first(_ suffix: String...) -> String? {
        leaves.first { $0.path.count >= suffix.count && Array($0.path.suffix(suffix.count)) == suffix }?.text
    }

    /// All leaves directly below an element named `parent` (first occurrence), as name → text.
    func children(of parent: String, under ancestor: String? = nil) -> [String: String] {
        var out: [String: String] = [:]
        var seenParentPath: [String]?
        for leaf in leaves where leaf.path.count >= 2 && leaf.path[leaf.path.count - 2] == parent {
            if let a = ancestor, !leaf.path.contains(a) { continue }
            let p = Array(leaf.path.dropLast())
            if seenParentPath == nil { seenParentPath = p }
            guard p == seenParentPath else { continue }
            out[leaf.path.last!] = leaf.text
        }
        return out
    }

    /// Leaves whose path ends with `suffix`, in document order.
    func all(_ suffix: String...) -> [Leaf] {
        leaves.filter { $0.path.count >= suffix.count && Array($0.path.suffix(suffix.count)) == suffix }
    }

    func contains(element: String) -> Bool { leaves.contains { $0.path.contains(element) } }

    private final class Collector: NSObject, XMLParserDelegate {
        var stack: [String] = []
        var attributeStack: [[String: String]] = []
        var text = ""
        var hadChild: [Bool] = []
        var leaves: [Leaf] = []

        func parser(_ parser: XMLParser, didStartElement name: String, namespaceURI: String?,
                    qualifiedName: String?, attributes: [String: String] = [:]) {
            if !hadChild.isEmpty { hadChild[hadChild.count - 1] = true }
            stack.append(name)
            attributeStack.append(attributes)
            hadChild.append(false)
            text = ""
        }

        func parser(_ parser: XMLParser, foundCharacters string: String) { text += string }

        func parser(_ parser: XMLParser, didEndElement name: String, namespaceURI: String?, qualifiedName: String?) {
            if hadChild.last == false {
                leaves.append(Leaf(path: stack, text: text.trimmingCharacters(in: .whitespacesAndNewlines), attributes: attributeStack))
            }
            stack.removeLast()
            attributeStack.removeLast()
            hadChild.removeLast()
            text = ""
        }
    }
}
