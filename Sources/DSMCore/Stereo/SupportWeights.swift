import Foundation

/// Correlation over support weights that follow both images (an edge-aware window): the ZNCC of a pixel
/// and a label weighs each neighbour by how freely one can walk to it, first along the row, then along the
/// column, through pixels whose intensity changes little in the left image and, at that label, in the
/// right image. Each step between neighbours passes λ · exp(−|ΔL| / γ) · exp(−|ΔR| / γ) of the weight
/// ("permeability", Çığla & Alatan 2013; here with the right image's term, which is what keeps the support
/// of a background pixel off a foreground edge that crosses it at the wrong disparity). The weighted sums
/// are recursive passes, so the cost per cell and label does not depend on the support's extent.
public struct SupportWeights: Sendable, Equatable {
    /// γ, in units of the image's standard deviation (images are normalised before matching).
    public var intensityScale: Float
    /// λ: the weight kept per pixel walked, e^(−1/25): the support fades over a few tens of pixels where the
    /// images are uniform.
    public var decay: Float

    public init(intensityScale: Float, decay: Float = exp(-1 / 25)) {
        self.intensityScale = intensityScale
        self.decay = decay
    }
}

extension CostVolume {
    /// Replaces the correlation costs (`data`) by 1 − the ZNCC over `support`'s weights, for every label;
    /// decorrelated cells (ZNCC ≤ the threshold, no texture under the weights, no-data in either image, or a
    /// match outside the right image) get `defaultCost`. The intensity term (`difference`) is left as is.
    /// The volume must come from `zncc(correlate: false)` (its `windowTexture`).
    mutating func applySupportWeightedCorrelation(_ support: SupportWeights, leftNoData: GrayImage?,
                                                  decorrelationThreshold: Double, minimumStd: Float) {
        let w = width, h = height, kp = paddedLabels, n = w * h
        let wr = phases[0].width
        guard w > 0, h > 0, labels.count > 0 else { return }
        let invGamma = 1 / support.intensityScale, lambda = support.decay
        let threshold = Float(decorrelationThreshold), m2 = minimumStd * minimumStd
        let def = defaultCost

        /// Validity (1 or 0) of each pixel and the permeabilities to the next column and the next row (0 at the
        /// last column and row, and next to no-data).
        func permeabilities(_ img: [Float], mask: [Float]?, width ww: Int) -> (valid: [Float], h: [Float], v: [Float]) {
            let valid = mask.map { m in m.map { abs($0) > 0.01 ? Float(0) : 1 } } ?? [Float](repeating: 1, count: ww * h)
            var ph = [Float](repeating: 0, count: ww * h), pv = [Float](repeating: 0, count: ww * h)
            for y in 0..<h {
                let r = y * ww
                if ww > 1 {
                    for x in 0..<(ww - 1) {
                        ph[r + x] = valid[r + x] * valid[r + x + 1] * exp(-abs(img[r + x + 1] - img[r + x]) * invGamma)
                    }
                }
                if y + 1 < h {
                    for x in 0..<ww { pv[r + x] = valid[r + x] * valid[r + ww + x] * exp(-abs(img[r + ww + x] - img[r + x]) * invGamma) }
                }
            }
            return (valid, ph, pv)
        }
        // The window statistics `zncc(correlate: false)` kept: a pixel is correlated only where its own square
        // window has texture in both images (and touches no no-data), as with the window data term — the support
        // may reach textured neighbours, but a uniform patch must stay empty, not take their disparity.
        guard let texture = windowTexture else { preconditionFailure("a volume built without the correlation is needed") }
        let leftTextured = texture.left, rightTextured = texture.right
        let leftPermeability = permeabilities(self.left.pixels, mask: leftNoData?.pixels, width: w)
        let right = phases.indices.map { permeabilities(phases[$0].pixels, mask: texture.rightNoData[$0], width: wr) }

        // Per label: a top-down pass builds each row's sums along the row (H, 6 channels: 1, L, R, L², R², LR,
        // weighted) and the downward sums along the columns (F); a bottom-up pass then adds the upward sums
        // (B) and turns F + B − H into the weighted ZNCC. Rows are [channel][column].
        let rowLength = 6 * w
        let hBuf = UnsafeMutablePointer<Float>.allocate(capacity: rowLength * h)
        let fBuf = UnsafeMutablePointer<Float>.allocate(capacity: rowLength * h)
        let vBuf = UnsafeMutablePointer<Float>.allocate(capacity: n)
        let back = UnsafeMutablePointer<Float>.allocate(capacity: rowLength)
        let hp = UnsafeMutablePointer<Float>.allocate(capacity: w)
        let cRow = UnsafeMutablePointer<Float>.allocate(capacity: 3 * w)  // weight, L, R of the row's pixels (0 outside)
        // Costs of 16 labels at a time, [label][pixel], then written into the volume's [pixel][label] layout 16
        // labels per pixel (one label at a time would touch a cache line per pixel and label).
        let block = 16
        let costs = UnsafeMutablePointer<Int16>.allocate(capacity: block * n)
        defer { hBuf.deallocate(); fBuf.deallocate(); vBuf.deallocate(); back.deallocate(); hp.deallocate(); cRow.deallocate(); costs.deallocate() }
        /// Moves the block of labels k0 ..< k1 into the volume.
        func flush(_ o: UnsafeMutablePointer<Int16>, _ k0: Int, _ k1: Int) {
            for i in 0..<n {
                let dst = o + i * kp + k0
                for j in 0..<(k1 - k0) { dst[j] = costs[j * n + i] }
            }
        }

        self.left.pixels.withUnsafeBufferPointer { LP in
        leftPermeability.valid.withUnsafeBufferPointer { LV in
        leftTextured.withUnsafeBufferPointer { LT in
        leftPermeability.h.withUnsafeBufferPointer { LH in
        leftPermeability.v.withUnsafeBufferPointer { LVP in
        data.withUnsafeMutableBufferPointer { out in
            let lp = LP.baseAddress!, lv = LV.baseAddress!, lh = LH.baseAddress!, lvp = LVP.baseAddress!, lt = LT.baseAddress!
            let o = out.baseAddress!
            for k in 0..<labels.count {
                let s = labelShift[k], phase = labelPhase[k]
                let columns = labels.matchedColumns(k, leftWidth: w, rightWidth: wr)
                let first = columns.lowerBound, last = columns.upperBound
                let plane = costs + (k % block) * n
                defer { if k % block == block - 1 || k == labels.count - 1 { flush(o, k - k % block, k + 1) } }
                guard first < last else {
                    for i in 0..<n { plane[i] = def }
                    continue
                }
                phases[phase].pixels.withUnsafeBufferPointer { RP in
                right[phase].valid.withUnsafeBufferPointer { RV in
                rightTextured[phase].withUnsafeBufferPointer { RT in
                right[phase].h.withUnsafeBufferPointer { RH in
                right[phase].v.withUnsafeBufferPointer { RVP in
                    let rp = RP.baseAddress!, rv = RV.baseAddress!, rh = RH.baseAddress!, rvp = RVP.baseAddress!, rt = RT.baseAddress!
                    let cw = cRow, cl = cRow + w, cr = cRow + 2 * w
                    for x in 0..<w { cw[x] = 0; cl[x] = 0; cr[x] = 0; hp[x] = 0 }
                    for y in 0..<h {
                        let i0 = y * w, r0 = y * wr - s  // the right pixel of column x: r0 + x
                        let vy = vBuf + i0
                        for x in 0..<first { vy[x] = 0 }
                        for x in last..<w { vy[x] = 0 }
                        do {
                            let lvy = lv + i0, lpy = lp + i0, lhy = lh + i0, lvpy = lvp + i0
                            let rvy = rv + r0, rpy = rp + r0, rhy = rh + r0, rvpy = rvp + r0
                            let lambdaV = SIMD8<Float>(repeating: lambda)
                            var x = first
                            while x + 8 <= last {
                                let c = load8(lvy + x) * load8(rvy + x)
                                UnsafeMutableRawPointer(cw + x).storeBytes(of: c, as: SIMD8<Float>.self)
                                UnsafeMutableRawPointer(cl + x).storeBytes(of: load8(lpy + x) * c, as: SIMD8<Float>.self)
                                UnsafeMutableRawPointer(cr + x).storeBytes(of: load8(rpy + x) * c, as: SIMD8<Float>.self)
                                UnsafeMutableRawPointer(hp + x).storeBytes(of: lambdaV * load8(lhy + x) * load8(rhy + x), as: SIMD8<Float>.self)
                                UnsafeMutableRawPointer(vy + x).storeBytes(of: lambdaV * load8(lvpy + x) * load8(rvpy + x), as: SIMD8<Float>.self)
                                x += 8
                            }
                            while x < last {
                                let c = lvy[x] * rvy[x]
                                cw[x] = c; cl[x] = lpy[x] * c; cr[x] = rpy[x] * c
                                hp[x] = lambda * lhy[x] * rhy[x]
                                vy[x] = lambda * lvpy[x] * rvpy[x]
                                x += 1
                            }
                        }
                        hp[last - 1] = 0
                        // Along the row: forward sums, then backward, H = F + B − C.
                        let hy = hBuf + y * rowLength
                        let h0 = hy, h1 = hy + w, h2 = hy + 2 * w, h3 = hy + 3 * w, h4 = hy + 4 * w, h5 = hy + 5 * w
                        var f0: Float = 0, f1: Float = 0, f2: Float = 0, f3: Float = 0, f4: Float = 0, f5: Float = 0
                        var a: Float = 0
                        for x in first..<last {
                            let c0 = cw[x], l = cl[x], r = cr[x]
                            f0 = c0.addingProduct(a, f0); f1 = l.addingProduct(a, f1); f2 = r.addingProduct(a, f2)
                            f3 = (l * l).addingProduct(a, f3); f4 = (r * r).addingProduct(a, f4); f5 = (l * r).addingProduct(a, f5)
                            h0[x] = f0; h1[x] = f1; h2[x] = f2; h3[x] = f3; h4[x] = f4; h5[x] = f5
                            a = hp[x]
                        }
                        var b0: Float = 0, b1: Float = 0, b2: Float = 0, b3: Float = 0, b4: Float = 0, b5: Float = 0
                        for x in stride(from: last - 1, through: first, by: -1) {
                            // B(x) = C(x) + a(x) · B(x + 1) (one fused step per channel on the dependency
                            // chain); H(x) = F(x) + B(x) − C(x).
                            let c0 = cw[x], l = cl[x], r = cr[x], a = hp[x]
                            let c3 = l * l, c4 = r * r, c5 = l * r
                            b0 = c0.addingProduct(a, b0); b1 = l.addingProduct(a, b1); b2 = r.addingProduct(a, b2)
                            b3 = c3.addingProduct(a, b3); b4 = c4.addingProduct(a, b4); b5 = c5.addingProduct(a, b5)
                            h0[x] += b0 - c0; h1[x] += b1 - l; h2[x] += b2 - r; h3[x] += b3 - c3; h4[x] += b4 - c4; h5[x] += b5 - c5
                        }
                        for c in 0..<6 {
                            let hc = hy + c * w
                            for x in 0..<first { hc[x] = 0 }
                            for x in last..<w { hc[x] = 0 }
                        }
                        // Down the columns: F(y) = H(y) + v(y − 1) · F(y − 1).
                        let fy = fBuf + y * rowLength
                        if y == 0 {
                            fy.update(from: hy, count: rowLength)
                        } else {
                            let fp = fBuf + (y - 1) * rowLength, vp = vBuf + i0 - w
                            for c in 0..<6 {
                                let hc = hy + c * w, fc = fy + c * w, pc = fp + c * w
                                var x = 0
                                while x + 8 <= w {
                                    UnsafeMutableRawPointer(fc + x).storeBytes(of: load8(hc + x) + load8(vp + x) * load8(pc + x), as: SIMD8<Float>.self)
                                    x += 8
                                }
                                while x < w { fc[x] = hc[x] + vp[x] * pc[x]; x += 1 }
                            }
                        }
                    }
                    // Up the columns: B(y) = H(y) + v(y) · B(y + 1); the sums are F + B − H; then the ZNCC.
                    for y in stride(from: h - 1, through: 0, by: -1) {
                        let hy = hBuf + y * rowLength, fy = fBuf + y * rowLength, vy = vBuf + y * w
                        if y == h - 1 {
                            back.update(from: hy, count: rowLength)
                        } else {
                            for c in 0..<6 {
                                let hc = hy + c * w, bc = back + c * w
                                var x = 0
                                while x + 8 <= w {
                                    UnsafeMutableRawPointer(bc + x).storeBytes(of: load8(hc + x) + load8(vy + x) * load8(bc + x), as: SIMD8<Float>.self)
                                    x += 8
                                }
                                while x < w { bc[x] = hc[x] + vy[x] * bc[x]; x += 1 }
                            }
                        }
                        let i0 = y * w, r0 = y * wr - s
                        for x in 0..<first { plane[i0 + x] = def }
                        for x in last..<w { plane[i0 + x] = def }
                        // 8 columns at a time, then the rest one by one.
                        let thresholdV = SIMD8<Float>(repeating: threshold), m2V = SIMD8<Float>(repeating: m2)
                        let zero = SIMD8<Float>(repeating: 0), defF = SIMD8<Float>(repeating: Float(def))
                        var x = first
                        let f0 = fy, f1 = fy + w, f2 = fy + 2 * w, f3 = fy + 3 * w, f4 = fy + 4 * w, f5 = fy + 5 * w
                        let b0 = back, b1 = back + w, b2 = back + 2 * w, b3 = back + 3 * w, b4 = back + 4 * w, b5 = back + 5 * w
                        let h0 = hy, h1 = hy + w, h2 = hy + 2 * w, h3 = hy + 3 * w, h4 = hy + 4 * w, h5 = hy + 5 * w
                        let lvy = lt + i0, rvy = rt + r0, py = plane + i0  // textured (1/σ > 0) in both
                        while x + 8 <= last {
                            let sw = load8(f0 + x) + load8(b0 + x) - load8(h0 + x)
                            let inv = 1 / sw
                            let ml = (load8(f1 + x) + load8(b1 + x) - load8(h1 + x)) * inv
                            let mr = (load8(f2 + x) + load8(b2 + x) - load8(h2 + x)) * inv
                            let vl = (load8(f3 + x) + load8(b3 + x) - load8(h3 + x)) * inv - ml * ml
                            let vr = (load8(f4 + x) + load8(b4 + x) - load8(h4 + x)) * inv - mr * mr
                            let ncc = ((load8(f5 + x) + load8(b5 + x) - load8(h5 + x)) * inv - ml * mr) / (vl * vr).squareRoot()
                            let ok = (load8(lvy + x) .> zero) .& (load8(rvy + x) .> zero) .& (sw .> zero)
                                .& (vl .> m2V) .& (vr .> m2V) .& (ncc .> thresholdV)
                            var c = (1 - ncc) * costUnitsPerZNCC
                            c.replace(with: zero, where: c .< zero)
                            c.replace(with: defF, where: .!ok)  // also keeps NaN out of the conversion
                            UnsafeMutableRawPointer(py + x).storeBytes(of: costUnits(c), as: SIMD8<Int16>.self)
                            x += 8
                        }
                        while x < last {
                            var cost = def
                            if lvy[x] > 0 && rvy[x] > 0 {
                                let sw = f0[x] + b0[x] - h0[x]
                                if sw > 0 {
                                    let inv = 1 / sw
                                    let ml = (f1[x] + b1[x] - h1[x]) * inv, mr = (f2[x] + b2[x] - h2[x]) * inv
                                    let vl = (f3[x] + b3[x] - h3[x]) * inv - ml * ml, vr = (f4[x] + b4[x] - h4[x]) * inv - mr * mr
                                    if vl > m2 && vr > m2 {
                                        let ncc = ((f5[x] + b5[x] - h5[x]) * inv - ml * mr) / (vl * vr).squareRoot()
                                        if ncc > threshold { cost = costUnits(max(0, 1 - ncc) * costUnitsPerZNCC) }
                                    }
                                }
                            }
                            py[x] = cost
                            x += 1
                        }
                    }
                }}}}}
            }
        }}}}}}
    }
}
