import CoreVideo
import FrameCacheFFI

/// A failed call of the engine: its status and message.
public struct FrameCacheError: Error, CustomStringConvertible {
    public let status: FcStatus
    public let message: String
    public var description: String { message }
}

private func check(_ status: FcStatus) throws {
    if status != FC_STATUS_OK {
        throw FrameCacheError(status: status, message: String(cString: fc_last_error()))
    }
}

/// One camera stream through the frame cache. Use it from one queue.
public final class FrameCache {
    private let handle: FcEngine

    /// Loads a model: a plan file from `framecache compile` (its sidecar and labels inside; the
    /// only kind the phone library reads), or a bundle (`bundle: true`: several heads on shared
    /// backbones; one bundle file from `framecache compile --bundle`, or a manifest with its plan
    /// files beside it).
    /// The defaults are the desktop app's: block-threshold 8 (tile differences low-passed, so
    /// sensor noise alone rarely crosses the threshold) with the adaptive bypass, which runs
    /// densely for a while when cached frames cost more than dense ones (a moving camera).
    /// `FC_MODE_EXACT` is the correctness reference.
    public init(modelPath: String, bundle: Bool = false, mode: UInt32 = UInt32(FC_MODE_BLOCK_THRESHOLD),
                threshold: Float = 8, tile: UInt32 = 16, threads: UInt32 = 0, bypass: Bool = true) throws {
        var options = FcOptions()
        try check(fc_options_default(&options))
        options.mode = mode
        options.threshold = threshold
        options.tile = tile
        options.threads = threads
        options.bypass = bypass ? 1 : 0
        var h: FcEngine = 0
        if bundle {
            try check(fc_engine_create_bundle(modelPath, &options, &h))
        } else {
            try check(fc_engine_create(modelPath, nil, &options, &h))
        }
        handle = h
    }

    deinit {
        _ = fc_engine_destroy(handle)
    }

    /// Processes a camera frame: NV12 (`420YpCbCr8BiPlanar`, video or full range) or 32BGRA.
    /// `rotation`: degrees clockwise that make the frame upright.
    public func push(_ buffer: CVPixelBuffer, rotation: UInt32) throws {
        CVPixelBufferLockBaseAddress(buffer, .readOnly)
        defer { CVPixelBufferUnlockBaseAddress(buffer, .readOnly) }
        let format = CVPixelBufferGetPixelFormatType(buffer)
        let width = UInt32(CVPixelBufferGetWidth(buffer))
        let height = UInt32(CVPixelBufferGetHeight(buffer))
        switch format {
        case kCVPixelFormatType_420YpCbCr8BiPlanarVideoRange, kCVPixelFormatType_420YpCbCr8BiPlanarFullRange:
            guard let y = CVPixelBufferGetBaseAddressOfPlane(buffer, 0),
                  let uv = CVPixelBufferGetBaseAddressOfPlane(buffer, 1) else {
                throw FrameCacheError(status: FC_STATUS_NULL_POINTER, message: "pixel buffer has no planes")
            }
            let yPtr = y.assumingMemoryBound(to: UInt8.self)
            let uvPtr = uv.assumingMemoryBound(to: UInt8.self)
            let uvStride = UInt32(CVPixelBufferGetBytesPerRowOfPlane(buffer, 1))
            var frame = FcYuv420(
                width: width, height: height,
                y: FcPlane(data: yPtr, row_stride: UInt32(CVPixelBufferGetBytesPerRowOfPlane(buffer, 0)), pixel_stride: 1),
                u: FcPlane(data: uvPtr, row_stride: uvStride, pixel_stride: 2),
                v: FcPlane(data: uvPtr + 1, row_stride: uvStride, pixel_stride: 2),
                full_range: format == kCVPixelFormatType_420YpCbCr8BiPlanarFullRange ? 1 : 0)
            try check(fc_engine_push_yuv420(handle, &frame, rotation))
        case kCVPixelFormatType_32BGRA:
            guard let base = CVPixelBufferGetBaseAddress(buffer) else {
                throw FrameCacheError(status: FC_STATUS_NULL_POINTER, message: "pixel buffer has no memory")
            }
            try check(fc_engine_push_rgba(handle, base.assumingMemoryBound(to: UInt8.self), width, height,
                                          UInt32(CVPixelBufferGetBytesPerRow(buffer)), UInt32(FC_PIXEL_BGRA), rotation))
        default:
            throw FrameCacheError(status: FC_STATUS_INVALID_ARGUMENT,
                                  message: "pixel format \(format) is neither NV12 nor 32BGRA")
        }
    }

    /// Statistics of the last frame.
    public func stats() throws -> FcStats {
        var s = FcStats()
        try check(fc_engine_stats(handle, &s))
        return s
    }

    /// Per input tile: 1 recomputed, 0 reused (row-major, `tile_cols` wide).
    public func tileMap() throws -> [UInt8] {
        try list(UInt8(0)) { fc_engine_tile_map(self.handle, $0, $1, $2) }
    }

    /// Top classes of head `head` (default the first), best first; empty when it is not a
    /// classifier.
    public func topClasses(head: UInt32 = 0) throws -> [(label: String, prob: Float)] {
        var info = FcHeadInfo()
        try check(fc_engine_head_info(handle, head, &info))
        guard info.kind == UInt32(FC_HEAD_CLASSES) else { return [] }
        var classes = [FcClass](repeating: FcClass(index: 0, prob: 0, label: nil), count: Int(info.count))
        var n = 0
        try check(fc_engine_classes(handle, head, &classes, classes.count, &n))
        return classes.prefix(n).map { (label: $0.label.map { String(cString: $0) } ?? "", prob: $0.prob) }
    }

    /// Heads: a model's outputs, or every head of a bundle in manifest order.
    public func headCount() throws -> UInt32 {
        var n: UInt32 = 0
        try check(fc_engine_head_count(handle, &n))
        return n
    }

    /// Head `head` on the last frame: its name, status (`FC_HEAD_COMPUTED`, `_UNCHANGED`,
    /// `_SKIPPED`) and cost, and its kind and size.
    public func head(_ head: UInt32) throws -> (name: String, status: FcHeadStatus, info: FcHeadInfo) {
        var status = FcHeadStatus()
        var info = FcHeadInfo()
        try check(fc_engine_head_status(handle, head, &status))
        try check(fc_engine_head_info(handle, head, &info))
        return (name: status.name.map { String(cString: $0) } ?? "", status: status, info: info)
    }

    /// A segmentation head's probability mask, `width * height` row-major.
    public func mask(head: UInt32) throws -> (width: UInt32, height: UInt32, probs: [Float]) {
        var info = FcHeadInfo()
        try check(fc_engine_head_info(handle, head, &info))
        var probs = [Float](repeating: 0, count: Int(info.count))
        var w: UInt32 = 0
        var h: UInt32 = 0
        try check(fc_engine_mask(handle, head, &probs, probs.count, &w, &h))
        return (width: w, height: h, probs: probs)
    }

    /// A detection head's boxes in frame pixels, best first, each with its keypoints.
    public func boxes(head: UInt32) throws -> [(box: FcBox, keypoints: [Float])] {
        let boxes = try list(FcBox()) { fc_engine_boxes(self.handle, head, $0, $1, $2) }
        return try boxes.indices.map { i in
            let xy = try list(Float(0)) { fc_engine_box_keypoints(self.handle, head, UInt32(i), $0, $1, $2) }
            return (box: boxes[i], keypoints: xy)
        }
    }

    /// A keypoint head's landmarks (`visibility` -1 where the model gives none).
    public func keypoints(head: UInt32) throws -> [FcKeypoint] {
        try list(FcKeypoint()) { fc_engine_keypoints(self.handle, head, $0, $1, $2) }
    }

    /// A list accessor's values: its size asked first, then filled.
    private func list<T>(_ blank: T, _ get: (UnsafeMutablePointer<T>?, Int, UnsafeMutablePointer<Int>) -> FcStatus)
        throws -> [T] {
        var needed = 0
        let status = get(nil, 0, &needed)
        if status != FC_STATUS_BUFFER_TOO_SMALL { try check(status) }
        var values = [T](repeating: blank, count: needed)
        try values.withUnsafeMutableBufferPointer { buf in try check(get(buf.baseAddress, buf.count, &needed)) }
        return values
    }
}
