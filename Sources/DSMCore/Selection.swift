/// Quickselect: puts the k-th smallest of `a` at index k, smaller ones before it, larger ones after
/// (in place, expected linear time). Shared by the medians of coregistration and of the matching cost.
func selectKthSmallest(_ a: inout UnsafeMutableBufferPointer<Float>, _ k: Int) {
    var lo = 0, hi = a.count - 1
    while lo < hi {
        let pivot = a[(lo + hi) / 2]
        var i = lo, j = hi
        while i <= j {
            while a[i] < pivot { i += 1 }
            while a[j] > pivot { j -= 1 }
            if i <= j { a.swapAt(i, j); i += 1; j -= 1 }
        }
        if k <= j { hi = j } else if k >= i { lo = i } else { return }
    }
}
