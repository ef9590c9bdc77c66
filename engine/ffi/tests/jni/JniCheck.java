import com.framecache.FrameCache;

import java.awt.image.BufferedImage;
import java.io.File;
import java.nio.ByteBuffer;
import javax.imageio.ImageIO;

/**
 * Host check of the Android app's JNI class (run by tests/jni.rs with the host build of
 * libframecache_ffi): a real PNG frame pushed as RGBA and as NV21 through direct ByteBuffers
 * with row strides, the statistics, and errors arriving as exceptions.
 *
 * Then a bundle: its heads by name, kind and status, and the wrong accessor for a head's kind
 * as an exception.
 *
 * usage: java -Djava.library.path=DIR JniCheck MODEL.onnx FRAME.png BUNDLE.toml
 */
public class JniCheck {
    public static void main(String[] args) throws Exception {
        BufferedImage img = ImageIO.read(new File(args[1]));
        int w = img.getWidth(), h = img.getHeight();
        int stride = w * 4 + 8;
        ByteBuffer rgba = ByteBuffer.allocateDirect(stride * h);
        // CameraX-style YUV_420_888 with NV21 underneath: V first, pixel stride 2, padded rows.
        int yStride = w + 16, uvStride = w + 16;
        ByteBuffer y = ByteBuffer.allocateDirect(yStride * (h - 1) + w);
        ByteBuffer vu = ByteBuffer.allocateDirect(uvStride * (h / 2 - 1) + w);
        for (int r = 0; r < h; r++) {
            for (int c = 0; c < w; c++) {
                int p = img.getRGB(c, r);
                int red = (p >> 16) & 255, green = (p >> 8) & 255, blue = p & 255;
                rgba.put(r * stride + c * 4, (byte) red);
                rgba.put(r * stride + c * 4 + 1, (byte) green);
                rgba.put(r * stride + c * 4 + 2, (byte) blue);
                rgba.put(r * stride + c * 4 + 3, (byte) 255);
                y.put(r * yStride + c, (byte) Math.round(16 + 0.257 * red + 0.504 * green + 0.098 * blue));
                if (r % 2 == 0 && c % 2 == 0) {
                    int at = (r / 2) * uvStride + c;
                    vu.put(at, (byte) Math.round(128 + 0.439 * red - 0.368 * green - 0.071 * blue));
                    vu.put(at + 1, (byte) Math.round(128 - 0.148 * red - 0.291 * green + 0.439 * blue));
                }
            }
        }
        ByteBuffer v = vu.duplicate();
        ByteBuffer u = vu.duplicate().position(1).slice();

        try (FrameCache fc = new FrameCache(args[0], FrameCache.MODE_EXACT, 8f, 16, 1, false)) {
            fc.pushRgba(rgba, w, h, stride, 0);
            String[] labels = fc.topLabels();
            float[] scores = fc.topScores();
            System.out.println("rgba top " + scores[0] + " " + labels[0]);
            FrameCache.Stats s = fc.stats();
            System.out.println("stats frame " + s.frameIndex + " size " + s.frameWidth + "x" + s.frameHeight
                    + " tiles " + s.tileRows + "x" + s.tileCols + " of " + s.tileSize + " map " + fc.tileMap().length);

            fc.pushYuv420(y, yStride, u, v, uvStride, 2, w, h, 90);
            s = fc.stats();
            System.out.println("nv21 top " + fc.topLabels()[0] + " | rotated " + s.frameWidth + "x" + s.frameHeight);

            try {
                fc.pushRgba(rgba, w, h, w * 4 - 1, 0);
                System.out.println("no exception for a short stride");
            } catch (IllegalArgumentException e) {
                System.out.println("stride error: " + e.getMessage());
            }
            try {
                fc.pushRgba(ByteBuffer.allocate(16), 2, 2, 8, 0);
                System.out.println("no exception for a heap buffer");
            } catch (IllegalArgumentException e) {
                System.out.println("heap buffer error: " + e.getMessage());
            }
        }
        try (FrameCache fc = FrameCache.bundle(args[2], FrameCache.MODE_EXACT, 8f, 16, 1, false)) {
            fc.pushRgba(rgba, w, h, stride, 0);
            for (int k = 0; k < fc.headCount(); k++) {
                FrameCache.Head head = fc.head(k);
                System.out.println("bundle head " + k + " " + head.name + " kind " + head.kind + " count " + head.count
                        + " status " + head.status + " top " + fc.topLabels(k)[0]);
            }
            try {
                fc.boxes(0);
                System.out.println("no exception for boxes of a classifier");
            } catch (IllegalArgumentException e) {
                System.out.println("boxes error: " + e.getMessage());
            }
            try {
                fc.head(fc.headCount());
                System.out.println("no exception for a head past the end");
            } catch (IllegalArgumentException e) {
                System.out.println("head error: " + e.getMessage());
            }
        }
        try {
            new FrameCache("/no/such/model.onnx", FrameCache.MODE_EXACT, 8f, 16, 1, false);
            System.out.println("no exception for a missing model");
        } catch (IllegalStateException e) {
            System.out.println("model error: " + e.getMessage());
        }
        System.out.println("jni ok");
    }
}
