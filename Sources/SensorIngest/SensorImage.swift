import DSMCore
import Foundation
import GDALKit

/// An image with its RPC camera model and what its metadata says of the acquisition.
public struct SensorImage: Sendable {
    public let path: String
    public let width: Int
    public let height: Int
    public let bands: Int
    public let dataType: RasterDataType
    public let model: RPCModel
    public let rpcSource: RPCSource
    /// The file the RPC was read from (the image itself for GeoTIFF tags).
    public let rpcFile: String
    public let metadata: AcquisitionMetadata?

    /// Opens an image, finds its RPC model and metadata, and checks that its pixels can be read.
    ///
    /// RPC sources, first found wins: `<stem>.RPB`, `<stem>_RPC.TXT`, the Pléiades `RPC_<product>.XML`
    /// beside an `IMG_<product>_R<r>C<c>` image, a `PHRDIMAP_*.XML` of the same product, then the
    /// image's own RPC metadata (GeoTIFF RPC tags). A sidecar that exists but is broken is an error, not
    /// skipped: it names the sidecar and the faulty field.
    public static func open(_ path: String) throws -> SensorImage {
        let url = URL(fileURLWithPath: path)
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir) else {
            throw IngestError.notAnImage(file: path, detail: "no such file")
        }
        guard !isDir.boolValue else { throw IngestError.notAnImage(file: path, detail: "is a folder") }
        let ds = try openRaster(path)
        guard ds.width > 0, ds.height > 0, ds.bandCount > 0 else {
            throw IngestError.notAnImage(file: path, detail: "no raster band")
        }
        let sidecars = Sidecars(image: url)
        var model: RPCModel?
        var source = RPCSource.geotiffTags
        var rpcFile = path
        if let rpb = sidecars.rpb {
            model = try RPBReader.model(contentsOf: rpb); source = .rpb; rpcFile = rpb.path
        } else if let txt = sidecars.rpcText {
            model = try RPCTextReader.model(contentsOf: txt); source = .rpcText; rpcFile = txt.path
        } else if let xml = sidecars.dimapRPC ?? sidecars.phrDimap {
            let (m, s) = try DIMAPRPCReader.model(contentsOf: xml)
            model = m; source = s; rpcFile = xml.path
        } else {
            let items = ds.metadata(domain: "RPC")
            if !items.isEmpty {
                model = try RPCDictionaryReader.model(from: items, file: path)
                source = .geotiffTags
            }
        }
        guard var model else {
            throw IngestError.noRPC(file: path, lookedFor: ["GeoTIFF RPC tags", sidecars.rpbName, sidecars.rpcTextName,
                                                            "RPC_<product>.XML / PHRDIMAP_*.XML beside IMG_<product>_R1C1"])
        }
        if model.imageDomain == nil { model.imageDomain = ImageDomain(width: ds.width, height: ds.height) }

        // Read the whole image at low resolution: a truncated or corrupt file fails here, not mid-pipeline.
        let probe = max(1, max(ds.width, ds.height) / 64)
        do {
            _ = try ds.read(bufferWidth: max(1, ds.width / probe), bufferHeight: max(1, ds.height / probe), resampling: .nearest)
            _ = try ds.read(column: 0, row: ds.height - 1, width: ds.width, height: 1)
        } catch let e as GDALError {
            throw IngestError.unreadableImage(file: path, detail: e.message)
        }

        var metadata: AcquisitionMetadata?
        if let dim = sidecars.dimMetadata ?? sidecars.phrDimap {
            metadata = try PleiadesMetadataReader.read(contentsOf: dim)
        }
        if metadata?.acquisitionTime == nil {
            // GeoTIFF crops of Pléiades products keep the dataset name in their GML coverage metadata.
            let text = ds.metadataItems().map { "\($0.0)=\($0.1)" }.joined(separator: "\n")
            if let (platform, date) = DateParsing.fromDatasetName(text) {
                var m = metadata ?? AcquisitionMetadata(source: "dataset name in image metadata")
                m.acquisitionTime = date
                m.platform = m.platform ?? platform
                metadata = m
            }
        }
        return SensorImage(path: path, width: ds.width, height: ds.height, bands: ds.bandCount,
                           dataType: ds.dataType(), model: model, rpcSource: source, rpcFile: rpcFile, metadata: metadata)
    }

    /// The first band decimated so that its longer side is at most `maxSize` samples (box average).
    public func decimated(maxSize: Int) throws -> GrayImage {
        let factor = max(1, Int((Double(max(width, height)) / Double(maxSize)).rounded(.up)))
        let bw = width / factor, bh = height / factor
        let ds = try RasterDataset(path: path)
        // Read the part that divides evenly so that each sample averages exactly factor × factor pixels.
        let pixels = try ds.read(width: bw * factor, height: bh * factor, bufferWidth: bw, bufferHeight: bh, resampling: .average)
        return GrayImage(width: bw, height: bh, pixels: pixels, scale: Double(factor))
    }
}

/// Opens a raster for ingestion: a file GDAL cannot open is "not an image", unless it starts like a TIFF,
/// in which case it is a damaged (e.g. truncated) image.
func openRaster(_ path: String) throws -> RasterDataset {
    do { return try RasterDataset(path: path) } catch let e as GDALError {
        if hasTIFFSignature(path) { throw IngestError.unreadableImage(file: path, detail: e.message) }
        throw IngestError.notAnImage(file: path, detail: e.message)
    }
}

/// True when a file starts like a TIFF/BigTIFF (so a failure to open it means a damaged TIFF).
func hasTIFFSignature(_ path: String) -> Bool {
    guard let h = FileHandle(forReadingAtPath: path) else { return false }
    defer { try? h.close() }
    let b = [UInt8](h.readData(ofLength: 4))
    guard b.count == 4 else { return false }
    return (b[0] == 0x49 && b[1] == 0x49 && (b[2] == 42 || b[2] == 43) && b[3] == 0)
        || (b[0] == 0x4D && b[1] == 0x4D && b[2] == 0 && (b[3] == 42 || b[3] == 43))
}

/// The sidecar files that may sit beside an image.
struct Sidecars {
    let rpb: URL?
    let rpcText: URL?
    let dimapRPC: URL?
    let phrDimap: URL?
    let dimMetadata: URL?
    let rpbName: String
    let rpcTextName: String

    init(image: URL) {
        let dir = image.deletingLastPathComponent()
        let name = image.lastPathComponent
        let stem = image.deletingPathExtension().lastPathComponent
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: dir.path)) ?? []
        func find(_ candidates: [String]) -> URL? {
            for c in candidates { if let e = entries.first(where: { $0.lowercased() == c.lowercased() }) { return dir.appendingPathComponent(e) } }
            return nil
        }
        rpbName = stem + ".RPB"
        rpcTextName = stem + "_RPC.TXT"
        rpb = find([stem + ".RPB"])
        rpcText = find([stem + "_RPC.TXT"])
        // Pléiades naming: IMG_<product>_R1C1.JP2 beside RPC_<product>.XML and DIM_<product>.XML.
        var product: String?
        if name.uppercased().hasPrefix("IMG_") {
            var p = String(stem.dropFirst(4))
            if let r = p.range(of: #"_R\d+C\d+$"#, options: [.regularExpression, .caseInsensitive]) { p.removeSubrange(r) }
            product = p
        }
        dimapRPC = product.flatMap { find(["RPC_\($0).XML"]) }
        dimMetadata = product.flatMap { find(["DIM_\($0).XML"]) }
        phrDimap = product.flatMap { p in find(["PHRDIMAP_\(p).XML"]) }
    }
}

/// Expands command-line inputs: a DIMAP product folder becomes the Pléiades images found below it.
public enum ProductDiscovery {
    static let imageExtensions: Set<String> = ["tif", "tiff", "jp2"]

    public static func expand(_ inputs: [String]) throws -> [String] {
        var out: [String] = []
        for input in inputs {
            var isDir: ObjCBool = false
            if FileManager.default.fileExists(atPath: input, isDirectory: &isDir), isDir.boolValue {
                let found = images(in: input)
                guard !found.isEmpty else { throw IngestError.noImagesInFolder(folder: input) }
                out += found
            } else {
                out.append(input)
            }
        }
        return out
    }

    /// Pléiades images (IMG_*.TIF/JP2 with an RPC_/PHRDIMAP_ XML beside) below a folder, sorted by path.
    public static func images(in folder: String) -> [String] {
        guard let e = FileManager.default.enumerator(atPath: folder) else { return [] }
        var found: [String] = []
        while let rel = e.nextObject() as? String {
            let url = URL(fileURLWithPath: folder).appendingPathComponent(rel)
            guard imageExtensions.contains(url.pathExtension.lowercased()),
                  url.lastPathComponent.uppercased().hasPrefix("IMG_") else { continue }
            let s = Sidecars(image: url)
            if s.dimapRPC != nil || s.phrDimap != nil || s.rpb != nil || s.rpcText != nil { found.append(url.path) }
        }
        return found.sorted()
    }
}
