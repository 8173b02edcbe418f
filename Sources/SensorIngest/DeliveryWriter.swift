import DSMCore
import Foundation
import GDALKit

/// Repackages images with RPC as a Pléiades-style DIMAP V2 delivery, the way real ones arrive: one
/// product folder per view holding `DIM_<id>.XML`, `RPC_<id>.XML` (the whole mosaic's model, DIMAP
/// pixels counted from 1) and the image cut into `IMG_<id>_R<r>C<c>.JP2` tiles (lossless JPEG2000, no
/// embedded georeferencing or RPC), plus a `VOL_PHR.XML` index at the delivery's root. For tests: the
/// pipeline must give the same result on the delivery as on its source images.
public struct DIMAPDeliveryWriter: Sendable {
    public var tileRows = 2
    public var tileColumns = 2

    public init() {}

    /// Writes the delivery; returns the DIM files, in the order of `images`.
    @discardableResult
    public func write(images: [String], to folder: String) throws -> [String] {
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        var dims: [String] = []
        for (k, path) in images.enumerated() {
            let image = try SensorImage.open(path)
            let stamp = image.metadata?.acquisitionTime.map { Self.stamp($0) } ?? "20000101000000\(k)"
            let id = "PHR1B_P_\(stamp)_SEN_DSMOPT\(k + 1)-001"
            let dir = (folder as NSString).appendingPathComponent("PROD_\(k + 1)_PAN")
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            let tw = (image.width + tileColumns - 1) / tileColumns, th = (image.height + tileRows - 1) / tileRows
            var files: [(Int, Int, String)] = []
            for r in 1...tileRows {
                for c in 1...tileColumns {
                    let x = (c - 1) * tw, y = (r - 1) * th
                    guard x < image.width, y < image.height else { continue }
                    let name = "IMG_\(id)_R\(r)C\(c).JP2"
                    try GeoProducts.translate(source: path, destination: (dir as NSString).appendingPathComponent(name), arguments: [
                        "-of", "JP2OpenJPEG", "-b", "1", "-srcwin", "\(x)", "\(y)", "\(min(tw, image.width - x))", "\(min(th, image.height - y))",
                        "-co", "REVERSIBLE=YES", "-co", "QUALITY=100", "-co", "GMLJP2=NO", "-co", "GeoJP2=NO", "-co", "WRITE_METADATA=NO",
                        "-co", "BLOCKXSIZE=256", "-co", "BLOCKYSIZE=256", "-co", "RESOLUTIONS=3",
                    ])
                    try? FileManager.default.removeItem(atPath: (dir as NSString).appendingPathComponent(name + ".aux.xml"))
                    files.append((r, c, name))
                }
            }
            let rpcName = "RPC_\(id).XML"
            try Self.rpcXML(image.model, width: image.width, height: image.height)
                .write(toFile: (dir as NSString).appendingPathComponent(rpcName), atomically: true, encoding: .utf8)
            let dim = (dir as NSString).appendingPathComponent("DIM_\(id).XML")
            try Self.dimXML(id: id, image: image, tileWidth: tw, tileHeight: th, files: files, rpc: rpcName)
                .write(toFile: dim, atomically: true, encoding: .utf8)
            dims.append(dim)
        }
        let components = dims.map { d -> String in
            let rel = ((d as NSString).deletingLastPathComponent as NSString).lastPathComponent + "/" + (d as NSString).lastPathComponent
            return """
                  <Component>
                    <COMPONENT_TITLE>\((d as NSString).lastPathComponent)</COMPONENT_TITLE>
                    <COMPONENT_TYPE>DIMAP</COMPONENT_TYPE>
                    <COMPONENT_PATH href="\(rel)"/>
                  </Component>
            """
        }.joined(separator: "\n")
        let vol = """
            <?xml version="1.0" encoding="UTF-8"?>
            <Dimap_Document>
              <Metadata_Identification>
                <METADATA_FORMAT version="2.0">DIMAP</METADATA_FORMAT>
                <METADATA_PROFILE>PHR_VOLUME</METADATA_PROFILE>
              </Metadata_Identification>
              <Dataset_Content>
                <Dataset_Components>
            \(components)
                </Dataset_Components>
              </Dataset_Content>
            </Dimap_Document>

            """
        try vol.write(toFile: (folder as NSString).appendingPathComponent("VOL_PHR.XML"), atomically: true, encoding: .utf8)
        return dims
    }

    static func stamp(_ d: Date) -> String {
        let f = DateFormatter()
        f.locale = Locale(identifier: "en_US_POSIX")
        f.timeZone = TimeZone(identifier: "UTC")
        f.dateFormat = "yyyyMMddHHmmss"
        return f.string(from: d)
    }

    static func iso(_ d: Date) -> String {
        let f = DateFormatter()
        f.locale = Locale(identifier: "en_US_POSIX")
        f.timeZone = TimeZone(identifier: "UTC")
        f.dateFormat = "yyyy-MM-dd'T'HH:mm:ss.SSS'Z'"
        return f.string(from: d)
    }

    static func number(_ v: Double) -> String { String(format: "%.17g", v) }

    /// The inverse model (ground → image) in DIMAP V2 RPC form; offsets 1-based.
    static func rpcXML(_ m: RPCModel, width: Int, height: Int) -> String {
        func coeffs(_ name: String, _ c: [Double]) -> String {
            c.enumerated().map { "        <\(name)_\($0.offset + 1)>\(number($0.element))</\(name)_\($0.offset + 1)>" }.joined(separator: "\n")
        }
        return """
            <?xml version="1.0" encoding="UTF-8"?>
            <Dimap_Document>
              <Metadata_Identification>
                <METADATA_FORMAT version="2.15">DIMAP</METADATA_FORMAT>
                <METADATA_PROFILE>PHR_SENSOR</METADATA_PROFILE>
                <METADATA_SUBPROFILE>RPC</METADATA_SUBPROFILE>
              </Metadata_Identification>
              <Rational_Function_Model>
                <Global_RFM>
                  <Inverse_Model>
            \(coeffs("SAMP_NUM_COEFF", m.column.numerator))
            \(coeffs("SAMP_DEN_COEFF", m.column.denominator))
            \(coeffs("LINE_NUM_COEFF", m.row.numerator))
            \(coeffs("LINE_DEN_COEFF", m.row.denominator))
                  </Inverse_Model>
                  <RFM_Validity>
                    <Direct_Model_Validity_Domain>
                      <FIRST_ROW>1</FIRST_ROW>
                      <FIRST_COL>1</FIRST_COL>
                      <LAST_ROW>\(height)</LAST_ROW>
                      <LAST_COL>\(width)</LAST_COL>
                    </Direct_Model_Validity_Domain>
                    <LONG_SCALE>\(number(m.longitudeNorm.scale))</LONG_SCALE>
                    <LONG_OFF>\(number(m.longitudeNorm.offset))</LONG_OFF>
                    <LAT_SCALE>\(number(m.latitudeNorm.scale))</LAT_SCALE>
                    <LAT_OFF>\(number(m.latitudeNorm.offset))</LAT_OFF>
                    <HEIGHT_SCALE>\(number(m.heightNorm.scale))</HEIGHT_SCALE>
                    <HEIGHT_OFF>\(number(m.heightNorm.offset))</HEIGHT_OFF>
                    <SAMP_SCALE>\(number(m.columnNorm.scale))</SAMP_SCALE>
                    <SAMP_OFF>\(number(m.columnNorm.offset + 1))</SAMP_OFF>
                    <LINE_SCALE>\(number(m.rowNorm.scale))</LINE_SCALE>
                    <LINE_OFF>\(number(m.rowNorm.offset + 1))</LINE_OFF>
                  </RFM_Validity>
                </Global_RFM>
              </Rational_Function_Model>
            </Dimap_Document>

            """
    }

    static func dimXML(id: String, image: SensorImage, tileWidth: Int, tileHeight: Int, files: [(Int, Int, String)], rpc: String) -> String {
        let rows = files.map(\.0).max() ?? 1, cols = files.map(\.1).max() ?? 1
        let dataFiles = files.map { "          <Data_File tile_R=\"\($0.0)\" tile_C=\"\($0.1)\"><DATA_FILE_PATH href=\"\($0.2)\"/></Data_File>" }
            .joined(separator: "\n")
        var source = ""
        if let t = image.metadata?.acquisitionTime {
            let s = iso(t)
            let platform = (image.metadata?.platform ?? "PHR 1B").split(separator: " ")
            source = """
                  <Dataset_Sources>
                    <Source_Identification>
                      <Strip_Source>
                        <MISSION>\(platform.first ?? "PHR")</MISSION>
                        <MISSION_INDEX>\(platform.count > 1 ? String(platform[1]) : "1B")</MISSION_INDEX>
                        <IMAGING_DATE>\(s.prefix(10))</IMAGING_DATE>
                        <IMAGING_TIME>\(s.dropFirst(11).dropLast())</IMAGING_TIME>
                      </Strip_Source>
                    </Source_Identification>
                  </Dataset_Sources>
                """
        }
        return """
            <?xml version="1.0" encoding="UTF-8"?>
            <Dimap_Document>
              <Metadata_Identification>
                <METADATA_FORMAT version="2.0">DIMAP</METADATA_FORMAT>
                <METADATA_PROFILE>PHR_SENSOR</METADATA_PROFILE>
              </Metadata_Identification>
              <Dataset_Identification>
                <DATASET_NAME>DS_\(id)</DATASET_NAME>
              </Dataset_Identification>
            \(source)
              <Processing_Information>
                <Product_Settings>
                  <PROCESSING_LEVEL>SENSOR</PROCESSING_LEVEL>
                  <SPECTRAL_PROCESSING>PAN</SPECTRAL_PROCESSING>
                </Product_Settings>
              </Processing_Information>
              <Raster_Data>
                <Data_Access>
                  <DATA_FILE_FORMAT>image/jp2</DATA_FILE_FORMAT>
                  <Data_Files>
            \(dataFiles)
                  </Data_Files>
                </Data_Access>
                <Raster_Dimensions>
                  <NROWS>\(image.height)</NROWS>
                  <NCOLS>\(image.width)</NCOLS>
                  <NBANDS>1</NBANDS>
                  <Tile_Set>
                    <NTILES>\(files.count)</NTILES>
                    <Regular_Tiling>
                      <NTILES_SIZE nrows="\(tileHeight)" ncols="\(tileWidth)"/>
                      <NTILES_COUNT ntiles_R="\(rows)" ntiles_C="\(cols)"/>
                      <OVERLAP_ROW>0</OVERLAP_ROW>
                      <OVERLAP_COL>0</OVERLAP_COL>
                    </Regular_Tiling>
                  </Tile_Set>
                </Raster_Dimensions>
                <Raster_Encoding>
                  <DATA_TYPE>INTEGER</DATA_TYPE>
                  <NBITS>12</NBITS>
                  <SIGN>UNSIGNED</SIGN>
                </Raster_Encoding>
              </Raster_Data>
              <Geoposition>
                <Geoposition_Models>
                  <Rational_Function_Model>
                    <Component>
                      <COMPONENT_TITLE>RPC Model</COMPONENT_TITLE>
                      <COMPONENT_PATH href="\(rpc)"/>
                    </Component>
                  </Rational_Function_Model>
                </Geoposition_Models>
              </Geoposition>
            </Dimap_Document>

            """
    }
}
