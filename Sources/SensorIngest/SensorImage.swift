import DSMCore
import Foundation
import GDALKit

/// An image with its RPC camera model and what its metadata says of the acquisition.
public struct SensorImage: Sendable {
    /// The GDAL drivers input images are opened with, and no other: GeoTIFF, JPEG2000 and DIMAP products.
    /// A VRT (which can read any file of the server or fetch URLs) or any other format is refused.
    public static let inputDrivers = ["GTiff", "JP2OpenJPEG", "JP2KAK", "JP2ECW", "JP2MrSID", "JPEG2000", "DIMAP"]

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
    /// skipped: it names the sidecar and the faulty field. `probe` false skips reading the pixels (`probe`):
    /// for a run resumed on inputs already read when it was planned.
    public static func open(_ path: String, probe probing: Bool = true) throws -> SensorImage {
        let url = URL(fileURLWithPath: path)
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir) else {
            throw IngestError.notAnImage(file: path, detail: "no such file")
        }
        guard !isDir.boolValue else { throw IngestError.notAnImage(file: path, detail: "is a folder") }
        if DIMAPProduct.isDIMFile(path) { return try openProduct(path, probe: probing) }
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
        // One tile of a multi-tile DIMAP product: its RPC_<product>.XML describes the whole mosaic, so the
        // model moves by the tile's offset in the mosaic (as GDAL does); never applied unshifted.
        if source == .dimapXML, let dim = sidecars.dimMetadata, let product = try? DIMAPProduct.read(dim.path), product.tiles.count > 1 {
            guard let o = product.offset(of: path) else {
                throw IngestError.malformed(file: path, reason: "\(dim.lastPathComponent) describes a \(product.tiles.count)-tile mosaic that does not list this file: give the DIM file or the product folder")
            }
            model.columnNorm.offset -= Double(o.column)
            model.rowNorm.offset -= Double(o.row)
            model.imageDomain = ImageDomain(width: ds.width, height: ds.height)
        }
        if model.imageDomain == nil { model.imageDomain = ImageDomain(width: ds.width, height: ds.height) }
        if probing { try probe(ds, path) }

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

    /// The image with its RPC projection shifted by a bias (the scene's relative orientation).
    public func corrected(by bias: ImageBias) -> SensorImage {
        bias == .zero ? self : SensorImage(path: path, width: width, height: height, bands: bands, dataType: dataType,
                                           model: model.corrected(by: bias), rpcSource: rpcSource, rpcFile: rpcFile, metadata: metadata)
    }

    /// Reads the whole image at low resolution: a truncated or corrupt file fails here, not mid-pipeline.
    /// It decodes every block of the file (a 268-Mpx DEFLATE GeoTIFF: about 3 CPU-s).
    static func probe(_ ds: RasterDataset, _ path: String) throws {
        let step = max(1, max(ds.width, ds.height) / 64)
        do {
            _ = try ds.read(bufferWidth: max(1, ds.width / step), bufferHeight: max(1, ds.height / step), resampling: .nearest)
            _ = try ds.read(column: 0, row: ds.height - 1, width: ds.width, height: 1)
        } catch let e as GDALError {
            throw IngestError.unreadableImage(file: path, detail: e.message)
        }
    }

    /// A DIMAP V2 product given by its DIM_*.XML: the mosaic GDAL's DIMAP driver opens, after checking its
    /// tiles, with the RPC and acquisition metadata the product names.
    static func openProduct(_ path: String, probe probing: Bool = true) throws -> SensorImage {
        let product = try DIMAPProduct.read(path)
        try product.checkTiles()
        let ds = try openRaster(path)
        guard ds.width == product.width, ds.height == product.height, ds.bandCount > 0 else {
            throw IngestError.malformed(file: path, reason: "GDAL reads a \(ds.width)×\(ds.height) mosaic, the product says \(product.width)×\(product.height)")
        }
        guard let rpc = product.rpcFile, FileManager.default.fileExists(atPath: rpc) else {
            throw IngestError.noRPC(file: path, lookedFor: [product.rpcFile ?? "RPC_\(product.productID).XML (named by the DIM file or beside it)"])
        }
        let (m, source) = try DIMAPRPCReader.model(contentsOf: URL(fileURLWithPath: rpc))
        var model = m
        if model.imageDomain == nil { model.imageDomain = ImageDomain(width: ds.width, height: ds.height) }
        if probing { try probe(ds, path) }
        let metadata = try PleiadesMetadataReader.read(contentsOf: URL(fileURLWithPath: path))
        return SensorImage(path: path, width: ds.width, height: ds.height, bands: ds.bandCount, dataType: ds.dataType(),
                           model: model, rpcSource: source, rpcFile: rpc, metadata: metadata)
    }

    /// The first band decimated so that its longer side is at most `maxSize` samples (box average).
    public func decimated(maxSize: Int) throws -> GrayImage {
        let factor = max(1, Int((Double(max(width, height)) / Double(maxSize)).rounded(.up)))
        let bw = width / factor, bh = height / factor
        let ds = try RasterDataset(path: path, drivers: Self.inputDrivers)
        // Box averages of full-resolution pixels, computed here in windows of about 1024² pixels: the
        // result does not depend on the container (a JPEG2000's reduced-resolution levels or a GeoTIFF's
        // overviews would otherwise be used, and differ).
        var pixels = [Float](repeating: 0, count: bw * bh)
        let chunk = max(1, 1024 / factor)
        var by = 0
        while by < bh {
            let nby = min(chunk, bh - by)
            var bx = 0
            while bx < bw {
                let nbx = min(chunk, bw - bx)
                let w = nbx * factor, h = nby * factor
                let v = try ds.read(column: bx * factor, row: by * factor, width: w, height: h)
                for j in 0..<nby {
                    for i in 0..<nbx {
                        var s: Double = 0
                        for y in (j * factor)..<((j + 1) * factor) {
                            for x in (i * factor)..<((i + 1) * factor) { s += Double(v[y * w + x]) }
                        }
                        pixels[(by + j) * bw + bx + i] = Float(s / Double(factor * factor))
                    }
                }
                bx += nbx
            }
            by += nby
        }
        return GrayImage(width: bw, height: bh, pixels: pixels, scale: Double(factor))
    }
}

/// Opens a raster for ingestion: a file GDAL cannot open is "not an image", unless it starts like a TIFF,
/// in which case it is a damaged (e.g. truncated) image.
/// `drivers`: the GDAL drivers allowed (sensor images: `SensorImage.inputDrivers`; nil: any, for rasters
/// the user names on the command line such as `dsmopt match`'s rectified images).
func openRaster(_ path: String, drivers: [String]? = SensorImage.inputDrivers) throws -> RasterDataset {
    do { return try RasterDataset(path: path, drivers: drivers) } catch let e as GDALError {
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

    /// The files that describe an image beside it (RPC sidecars, DIMAP metadata), which travel with it.
    var all: [URL] { [rpb, rpcText, dimapRPC, phrDimap, dimMetadata].compactMap { $0 } }
}

extension SensorImage {
    /// An image's companion files (RPC sidecars, the Pléiades RPC and DIM files beside it): what must be
    /// copied with it for it to stay usable.
    public static func companionFiles(of path: String) -> [String] {
        Sidecars(image: URL(fileURLWithPath: path)).all.map(\.path)
    }
}

/// Expands command-line inputs into images. A DIMAP V2 product is ONE image, given as its `DIM_*.XML`, its
/// product folder, or a delivery folder holding one product per view (with its `VOL_PHR.XML` index, or
/// the DIM files below it); when a delivery bundles panchromatic and multispectral products, the
/// panchromatic ones are matched. Other folders give the Pléiades images found below them.
public enum ProductDiscovery {
    static let imageExtensions: Set<String> = ["tif", "tiff", "jp2"]

    public static func expand(_ inputs: [String]) throws -> [String] {
        var out: [String] = []
        for input in inputs {
            var isDir: ObjCBool = false
            let exists = FileManager.default.fileExists(atPath: input, isDirectory: &isDir)
            let name = (input as NSString).lastPathComponent.uppercased()
            if exists, !isDir.boolValue, name == "VOL_PHR.XML" || name == "VOL_PNEO.XML" {
                out += try expandFolder((input as NSString).deletingLastPathComponent)
            } else if exists, isDir.boolValue {
                out += try expandFolder(input)
            } else {
                out.append(input)
            }
        }
        return out
    }

    /// The images of a folder: its DIMAP products (PAN first), else the Pléiades images below it.
    public static func expandFolder(_ folder: String) throws -> [String] {
        if let dims = try DeliveryIndex.products(in: folder) { return try panchromaticFirst(dims) }
        let dims = dimFiles(in: folder)
        if !dims.isEmpty { return try panchromaticFirst(dims) }
        let found = images(in: folder)
        guard !found.isEmpty else { throw IngestError.noImagesInFolder(folder: folder) }
        return found
    }

    /// The panchromatic products when there are any (PAN + MS bundles), else all of them.
    static func panchromaticFirst(_ dims: [String]) throws -> [String] {
        let products = try dims.map { try DIMAPProduct.read($0) }
        let pan = products.filter(\.isPanchromatic)
        return (pan.isEmpty ? products : pan).map(\.dimFile)
    }

    /// DIM_*.XML files below a folder, sorted by path.
    static func dimFiles(in folder: String) -> [String] {
        guard let e = FileManager.default.enumerator(atPath: folder) else { return [] }
        var found: [String] = []
        while let rel = e.nextObject() as? String {
            if DIMAPProduct.isDIMFile(rel) { found.append((folder as NSString).appendingPathComponent(rel)) }
        }
        return found.sorted()
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

extension Array where Element == SensorImage {
    /// The images with a relative orientation's biases applied (as they are without one).
    public func oriented(by orientation: OrientationAdjustment?) -> [SensorImage] {
        guard let orientation else { return self }
        return zip(self, orientation.biases).map { $0.corrected(by: $1) }
    }
}
