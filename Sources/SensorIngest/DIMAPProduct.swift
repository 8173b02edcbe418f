import DSMCore
import Foundation
import GDALKit

/// A Pléiades DIMAP V2 product as its `DIM_<id>.XML` describes it: ONE image, possibly split into a
/// regular grid of tiles (`IMG_<id>_R<r>C<c>.JP2`), with the RPC of the whole mosaic in `RPC_<id>.XML`.
/// GDAL's DIMAP driver opens the DIM file as the mosaic; this type reads what dsmopt needs to check the
/// product before trusting it, and to place a single tile inside its mosaic.
public struct DIMAPProduct: Sendable {
    public struct Tile: Sendable, Equatable {
        /// 1-based, as in the DIM file.
        public var row: Int
        public var column: Int
        public var path: String
    }

    public let dimFile: String
    /// `<id>` of `DIM_<id>.XML`.
    public let productID: String
    public let width: Int
    public let height: Int
    public let bands: Int
    public let tileWidth: Int
    public let tileHeight: Int
    public let tiles: [Tile]
    /// The RPC model file the DIM file names (or `RPC_<id>.XML` beside it); nil when neither exists.
    public let rpcFile: String?
    /// PAN, MS, PMS, ... (Processing_Information/Product_Settings/SPECTRAL_PROCESSING), when stated.
    public let spectralProcessing: String?

    public static func isDIMFile(_ path: String) -> Bool {
        let n = (path as NSString).lastPathComponent.uppercased()
        return n.hasPrefix("DIM_") && n.hasSuffix(".XML")
    }

    /// A file a product names: relative to its folder and inside it (a DIM naming `/etc/…` or `../../…`
    /// would make the service read files that are not the user's).
    static func inside(_ dir: String, _ href: String, file: String) throws -> String {
        let root = URL(fileURLWithPath: dir).standardizedFileURL.path
        let target = URL(fileURLWithPath: dir).appendingPathComponent(href).standardizedFileURL.path
        guard !href.hasPrefix("/"), !href.contains("://"), target.hasPrefix(root + "/") else {
            throw IngestError.malformed(file: file, reason: "\(href) lies outside the product's folder")
        }
        return target
    }

    public static func read(_ path: String) throws -> DIMAPProduct {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw IngestError.notAnImage(file: path, detail: "no such file")
        }
        let xml = try XMLLeaves(data: data, file: path)
        let dir = (path as NSString).deletingLastPathComponent
        let name = ((path as NSString).lastPathComponent as NSString).deletingPathExtension
        let id = String(name.dropFirst(4))
        func int(_ k: String...) -> Int? { xml.leaves.first { $0.path.count >= k.count && Array($0.path.suffix(k.count)) == k }.flatMap { Int($0.text) } }
        guard let w = int("Raster_Dimensions", "NCOLS"), let h = int("Raster_Dimensions", "NROWS"), w > 0, h > 0 else {
            throw IngestError.malformed(file: path, reason: "not a DIMAP V2 product: no Raster_Data/Raster_Dimensions NCOLS and NROWS")
        }
        let bands = int("Raster_Dimensions", "NBANDS") ?? 1
        var tiles: [Tile] = []
        for leaf in xml.all("Data_File", "DATA_FILE_PATH") {
            let fileAttrs = leaf.attributes[leaf.attributes.count - 2]
            guard let href = leaf.attributes.last?["href"], !href.isEmpty else { continue }
            let r = fileAttrs["tile_R"].flatMap(Int.init) ?? 1, c = fileAttrs["tile_C"].flatMap(Int.init) ?? 1
            guard r >= 1, c >= 1 else { throw IngestError.malformed(file: path, reason: "Data_File \(href) has tile_R \(r), tile_C \(c)") }
            tiles.append(Tile(row: r, column: c, path: try inside(dir, href, file: path)))
        }
        guard !tiles.isEmpty else { throw IngestError.malformed(file: path, reason: "no Data_Files/Data_File/DATA_FILE_PATH: the product names no image file") }
        let size = xml.all("Regular_Tiling", "NTILES_SIZE").first?.attributes.last
        var tw = size?["ncols"].flatMap(Int.init) ?? 0, th = size?["nrows"].flatMap(Int.init) ?? 0
        if tiles.count == 1 { tw = w; th = h }
        guard tw > 0, th > 0 else { throw IngestError.malformed(file: path, reason: "\(tiles.count) tiles but no Tile_Set/Regular_Tiling/NTILES_SIZE") }
        // The RPC: the Rational_Function_Model component the DIM names, else RPC_<id>.XML beside it.
        var rpc: String?
        for leaf in xml.all("Rational_Function_Model", "Component", "COMPONENT_PATH") {
            if let href = leaf.attributes.last?["href"], !href.isEmpty { rpc = try inside(dir, href, file: path); break }
        }
        if rpc == nil {
            let beside = (dir as NSString).appendingPathComponent("RPC_\(id).XML")
            if FileManager.default.fileExists(atPath: beside) { rpc = beside }
        }
        return DIMAPProduct(dimFile: path, productID: id, width: w, height: h, bands: bands, tileWidth: tw, tileHeight: th,
                            tiles: tiles.sorted { ($0.row, $0.column) < ($1.row, $1.column) }, rpcFile: rpc,
                            spectralProcessing: xml.first("Product_Settings", "SPECTRAL_PROCESSING"))
    }

    /// Checks that the tiles cover the mosaic exactly: every tile of the grid listed and present, each of
    /// the size the grid gives it. Errors name the file at fault.
    public func checkTiles() throws {
        let rows = (height + tileHeight - 1) / tileHeight, cols = (width + tileWidth - 1) / tileWidth
        for r in 1...rows {
            for c in 1...cols where !tiles.contains(where: { $0.row == r && $0.column == c }) {
                throw IngestError.malformed(file: dimFile, reason: "tile R\(r)C\(c) of the \(rows)×\(cols) mosaic is not listed")
            }
        }
        for t in tiles {
            guard FileManager.default.fileExists(atPath: t.path) else {
                throw IngestError.malformed(file: t.path, reason: "tile R\(t.row)C\(t.column) named by \((dimFile as NSString).lastPathComponent) is missing")
            }
            let ds = try openRaster(t.path)
            let ew = min(tileWidth, width - (t.column - 1) * tileWidth), eh = min(tileHeight, height - (t.row - 1) * tileHeight)
            guard ew > 0, eh > 0 else {
                throw IngestError.malformed(file: t.path, reason: "tile R\(t.row)C\(t.column) lies outside the \(width)×\(height) mosaic")
            }
            guard ds.width == ew, ds.height == eh, ds.bandCount == bands else {
                throw IngestError.malformed(file: t.path, reason: "tile R\(t.row)C\(t.column) is \(ds.width)×\(ds.height)×\(ds.bandCount), the product says \(ew)×\(eh)×\(bands)")
            }
            // A truncated or corrupt tile is named here, not as a failure of the whole mosaic later.
            try SensorImage.probe(ds, t.path)
        }
    }

    /// Where a tile file sits in the mosaic: its top-left pixel (0-based column, row), nil when the file is
    /// not one of this product's tiles.
    public func offset(of file: String) -> (column: Int, row: Int)? {
        let target = URL(fileURLWithPath: file).standardizedFileURL.resolvingSymlinksInPath().path
        guard let t = tiles.first(where: { URL(fileURLWithPath: $0.path).standardizedFileURL.resolvingSymlinksInPath().path == target }) else {
            return nil
        }
        return ((t.column - 1) * tileWidth, (t.row - 1) * tileHeight)
    }

    /// A panchromatic product (stated, or `_P_` in its identifier as Pléiades names them).
    public var isPanchromatic: Bool {
        if let s = spectralProcessing?.uppercased() { return s == "PAN" || s == "P" }
        return productID.uppercased().contains("_P_")
    }
}

/// A delivery's volume index (`VOL_PHR.XML`): the DIMAP products it holds.
enum DeliveryIndex {
    static func products(in folder: String) throws -> [String]? {
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? []
        guard let vol = entries.first(where: { $0.uppercased() == "VOL_PHR.XML" || $0.uppercased() == "VOL_PNEO.XML" }) else { return nil }
        let path = (folder as NSString).appendingPathComponent(vol)
        guard let data = FileManager.default.contents(atPath: path) else { throw IngestError.malformed(file: path, reason: "cannot be read") }
        let xml = try XMLLeaves(data: data, file: path)
        var out: [String] = []
        // Each Component of type DIMAP points at a DIM_*.XML (paths relative to the volume's folder).
        var type: String?
        for leaf in xml.leaves where leaf.path.contains("Dataset_Components") {
            if leaf.path.last == "COMPONENT_TYPE" { type = leaf.text }
            if leaf.path.last == "COMPONENT_PATH", let href = leaf.attributes.last?["href"], type == nil || type == "DIMAP" {
                out.append(try DIMAPProduct.inside(folder, href, file: path))
                type = nil
            }
        }
        guard !out.isEmpty else { throw IngestError.malformed(file: path, reason: "lists no DIMAP product (Dataset_Components/Component)") }
        for p in out where !FileManager.default.fileExists(atPath: p) {
            throw IngestError.malformed(file: path, reason: "names \(p), which is not there")
        }
        return out
    }
}
