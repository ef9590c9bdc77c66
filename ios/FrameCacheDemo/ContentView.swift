import AVFoundation
import FrameCacheFFI
import SwiftUI

struct ContentView: View {
    @StateObject private var camera = CameraModel()

    var body: some View {
        ZStack(alignment: .bottomLeading) {
            CameraPreview(session: camera.session)
            TileOverlay(stats: camera.stats, tiles: camera.tiles, mask: camera.mask)
            VStack(alignment: .leading, spacing: 4) {
                Toggle("block-threshold 8", isOn: $camera.threshold).frame(width: 180)
                Text(String(format: "hit %.0f%%  MAC saving %.0f%%  engine %.1f ms",
                            100 * camera.stats.input_hit_rate, 100 * camera.stats.mac_saving, camera.stats.engine_ms))
                ForEach(Array(camera.classes.prefix(3).enumerated()), id: \.offset) { _, c in
                    Text(String(format: "%@ %.0f%%", c.label, 100 * c.prob))
                }
                if !camera.mask.probs.isEmpty {
                    Text(String(format: "person %.0f%% of the view",
                                100 * Double(camera.mask.probs.filter { $0 > 0.5 }.count) / Double(camera.mask.probs.count)))
                }
                if !camera.message.isEmpty { Text(camera.message).foregroundColor(.yellow) }
            }
            .font(.system(.caption, design: .monospaced))
            .foregroundColor(.white)
            .padding(8)
            .background(Color.black.opacity(0.6))
        }
        .background(Color.black)
        .onAppear { camera.start() }
    }
}

/// Recomputed tiles in red, reused ones in green, and the mask's cells above one half in blue,
/// over the part of the frame the model sees.
struct TileOverlay: View {
    let stats: FcStats
    let tiles: [UInt8]
    let mask: (width: UInt32, height: UInt32, probs: [Float])

    var body: some View {
        Canvas { context, size in
            let s = stats
            guard s.frame_width > 0, tiles.count == Int(s.tile_rows * s.tile_cols) else { return }
            // The preview is aspect-fit: frame pixels → view points.
            let scale = min(size.width / CGFloat(s.frame_width), size.height / CGFloat(s.frame_height))
            let ox = (size.width - CGFloat(s.frame_width) * scale) / 2 + CGFloat(s.region_x) * scale
            let oy = (size.height - CGFloat(s.frame_height) * scale) / 2 + CGFloat(s.region_y) * scale
            let sx = CGFloat(s.region_width) * scale / CGFloat(s.input_width)
            let sy = CGFloat(s.region_height) * scale / CGFloat(s.input_height)
            let t = CGFloat(s.tile_size)
            for r in 0..<Int(s.tile_rows) {
                for c in 0..<Int(s.tile_cols) {
                    let x0 = CGFloat(c) * t, y0 = CGFloat(r) * t
                    let x1 = min(x0 + t, CGFloat(s.input_width)), y1 = min(y0 + t, CGFloat(s.input_height))
                    let rect = CGRect(x: ox + x0 * sx, y: oy + y0 * sy, width: (x1 - x0) * sx - 1, height: (y1 - y0) * sy - 1)
                    let dirty = tiles[r * Int(s.tile_cols) + c] != 0
                    context.fill(Path(rect), with: .color(dirty ? .red.opacity(0.35) : .green.opacity(0.15)))
                }
            }
            let (mw, mh) = (Int(mask.width), Int(mask.height))
            guard mw > 0, mh > 0, mask.probs.count == mw * mh else { return }
            let cw = CGFloat(s.input_width) * sx / CGFloat(mw), ch = CGFloat(s.input_height) * sy / CGFloat(mh)
            for r in 0..<mh {
                for c in 0..<mw where mask.probs[r * mw + c] > 0.5 {
                    let rect = CGRect(x: ox + CGFloat(c) * cw, y: oy + CGFloat(r) * ch, width: cw, height: ch)
                    context.fill(Path(rect), with: .color(.blue.opacity(0.4)))
                }
            }
        }
        .allowsHitTesting(false)
    }
}

struct CameraPreview: UIViewRepresentable {
    let session: AVCaptureSession

    func makeUIView(context: Context) -> PreviewView {
        let view = PreviewView()
        view.previewLayer.session = session
        view.previewLayer.videoGravity = .resizeAspect
        return view
    }

    func updateUIView(_ uiView: PreviewView, context: Context) {}

    final class PreviewView: UIView {
        override class var layerClass: AnyClass { AVCaptureVideoPreviewLayer.self }
        var previewLayer: AVCaptureVideoPreviewLayer { layer as! AVCaptureVideoPreviewLayer }
    }
}
