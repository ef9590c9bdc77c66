import AVFoundation
import FrameCache
import FrameCacheFFI
import SwiftUI

/// AVCaptureSession → CVPixelBuffer (NV12) → the engine, on one serial queue. Late frames are
/// discarded (`alwaysDiscardsLateVideoFrames`), as the desktop demo drops stale ones.
final class CameraModel: NSObject, ObservableObject, AVCaptureVideoDataOutputSampleBufferDelegate {
    let session = AVCaptureSession()
    @Published var stats = FcStats()
    @Published var tiles: [UInt8] = []
    @Published var classes: [(label: String, prob: Float)] = []
    /// The bundle's first mask head (the person mask), `width * height` probabilities.
    @Published var mask: (width: UInt32, height: UInt32, probs: [Float]) = (0, 0, [])
    @Published var message = "starting"
    @Published var threshold = true { didSet { queue.async { self.engine = nil } } }

    private let queue = DispatchQueue(label: "framecache.frames")
    private var engine: FrameCache?

    func start() {
        AVCaptureDevice.requestAccess(for: .video) { granted in
            guard granted else {
                DispatchQueue.main.async { self.message = "camera permission denied" }
                return
            }
            self.queue.async { self.configure() }
        }
    }

    private func configure() {
        guard let device = AVCaptureDevice.default(.builtInWideAngleCamera, for: .video, position: .back),
              let input = try? AVCaptureDeviceInput(device: device), session.canAddInput(input) else {
            DispatchQueue.main.async { self.message = "no camera available" }
            return
        }
        session.beginConfiguration()
        session.sessionPreset = .vga640x480
        session.addInput(input)
        let output = AVCaptureVideoDataOutput()
        output.videoSettings = [kCVPixelBufferPixelFormatTypeKey as String: kCVPixelFormatType_420YpCbCr8BiPlanarFullRange]
        output.alwaysDiscardsLateVideoFrames = true
        output.setSampleBufferDelegate(self, queue: queue)
        if session.canAddOutput(output) { session.addOutput(output) }
        session.commitConfiguration()
        session.startRunning()
    }

    func captureOutput(_ output: AVCaptureOutput, didOutput sampleBuffer: CMSampleBuffer, from connection: AVCaptureConnection) {
        guard let pixels = CMSampleBufferGetImageBuffer(sampleBuffer) else { return }
        do {
            if engine == nil {
                // One bundle file: MobileNetV2's ImageNet classes, and the person and face masks
                // distilled onto its backbone.
                guard let file = Bundle.main.path(forResource: "mobilenet_v2_shared", ofType: "fcbundle") else {
                    throw FrameCacheError(status: FC_STATUS_MODEL, message: "mobilenet_v2_shared.fcbundle is not in the app bundle")
                }
                engine = try FrameCache(modelPath: file, bundle: true,
                                        mode: UInt32(threshold ? FC_MODE_BLOCK_THRESHOLD : FC_MODE_EXACT))
            }
            guard let engine else { return }
            // The back camera delivers landscape buffers; a quarter turn makes them portrait.
            try engine.push(pixels, rotation: 90)
            let s = try engine.stats()
            let map = try engine.tileMap()
            let top = try engine.topClasses()
            var mask: (width: UInt32, height: UInt32, probs: [Float]) = (0, 0, [])
            for k in 0..<(try engine.headCount()) {
                if try engine.head(k).info.kind == UInt32(FC_HEAD_MASK) {
                    mask = try engine.mask(head: k)
                    break
                }
            }
            DispatchQueue.main.async {
                self.stats = s
                self.tiles = map
                self.classes = top
                self.mask = mask
                self.message = ""
            }
        } catch {
            DispatchQueue.main.async { self.message = "engine: \(error)" }
        }
    }
}
