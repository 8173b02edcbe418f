import DSMCore
import Foundation
import GDALKit
import SensorIngest

/// Stage 3 of a ground tile: the true ortho of every image on the finished DSM (read with `orthoMargin`
/// cells around the tile, so that occluders just outside the tile still hide what they hide), and the
/// mosaic taking each cell from the most nadir view that sees it. Writes one band per image, then the
/// mosaic and its source index (1-based, 0 where no view sees the cell).
struct OrthoTask: Sendable {
    let plan: RunPlan
    let images: [SensorImage]
    let work: WorkFolder

    func run(_ tile: GroundTile) throws {
        let grid = plan.grid
        let ext = tile.cells.expanded(by: plan.orthoMargin, within: grid)
        let g = grid.subgrid(ext)
        let dsm = GridRaster(grid: g, values: try work.read(.fuse, plan: plan.tiles, window: ext, bands: [2])[0])
        let toGeo = try CoordinateTransform(fromEPSG: grid.epsg, toEPSG: 4326)
        var (lon, lat) = toGeo.transformCellCentres(originX: g.originX, originY: g.originY, resolution: g.resolution,
                                                    width: g.width, height: g.height) ?? ([], [])
        if lon.isEmpty {
            // A lattice point failed to transform: every cell on its own, as far as each goes.
            lon = [Double](repeating: 0, count: g.count); lat = lon
            for j in 0..<g.height { for i in 0..<g.width { let c = g.centre(i, j); lon[j * g.width + i] = c.x; lat[j * g.width + i] = c.y } }
            toGeo.transform(x: &lon, y: &lat)
        }
        var bands: [[Float]] = []
        for img in images {
            let o = try TrueOrtho.render(image: img, dsm: dsm, longitudes: lon, latitudes: lat, resolution: grid.resolution)
            bands.append(ext.crop(o, to: tile.cells))
        }
        let order = plan.incidences.indices.sorted { plan.incidences[$0] < plan.incidences[$1] }
        var mosaic = [Float](repeating: 0, count: tile.cells.count), source = mosaic
        for c in 0..<tile.cells.count {
            for k in order where bands[k][c] > 0 { mosaic[c] = bands[k][c]; source[c] = Float(k + 1); break }
        }
        try work.write(.ortho, tile, bands: bands + [mosaic, source])
    }
}
