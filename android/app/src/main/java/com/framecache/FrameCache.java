package com.framecache;

import java.nio.ByteBuffer;

/**
 * The framecache engine through its JNI layer ({@code libframecache_ffi.so}, built by
 * {@code android/build-rust.sh}). One instance per camera stream, used from one thread.
 * Errors are thrown as {@link IllegalStateException} (engine, model, handle) or
 * {@link IllegalArgumentException} (sizes, strides, options) with the engine's message.
 *
 * <p>Kept in Java, not Kotlin, so the host JNI test compiles and runs it with a plain JDK.
 */
public final class FrameCache implements AutoCloseable {
    static {
        System.loadLibrary("framecache_ffi");
    }

    public static final int MODE_EXACT = 0;
    public static final int MODE_THRESHOLD = 1;
    public static final int MODE_DELTA = 2;
    /** Threshold on low-passed tile differences (2x2 block means): sensor noise alone rarely
     * crosses it. The mode for a camera, with the bypass on. */
    public static final int MODE_BLOCK_THRESHOLD = 3;
    public static final int MODE_BLOCK_DELTA = 4;

    /** {@link #head} kinds. */
    public static final int HEAD_CLASSES = 0;
    public static final int HEAD_MASK = 1;
    public static final int HEAD_VALUES = 2;
    public static final int HEAD_DETECTIONS = 3;
    public static final int HEAD_KEYPOINTS = 4;
    /** {@link Head#status}: ran, due but nothing it reads changed, not due (its rate). */
    public static final int HEAD_COMPUTED = 0;
    public static final int HEAD_UNCHANGED = 1;
    public static final int HEAD_SKIPPED = 2;

    private long handle;

    /**
     * Loads a model: a plan file from {@code framecache compile} (its sidecar and labels inside;
     * the only kind the phone library reads), or, on a desktop build with the importers, an ONNX
     * model with its sidecar {@code <model>.toml} beside it. {@code bypass}: the adaptive bypass
     * (when cached frames cost more than dense ones, run densely for a while), which keeps a
     * moving camera at the cost of full inference.
     */
    public FrameCache(String modelPath, int mode, float threshold, int tile, int threads, boolean bypass) {
        this(modelPath, false, mode, threshold, tile, threads, bypass);
    }

    private FrameCache(String path, boolean bundle, int mode, float threshold, int tile, int threads,
            boolean bypass) {
        handle = nativeCreate(path, bundle, mode, threshold, tile, threads, bypass);
    }

    /** Loads a bundle: several heads on shared backbones, from one bundle file ({@code framecache compile --bundle}) or a manifest with its plan files beside it. */
    public static FrameCache bundle(String manifestPath, int mode, float threshold, int tile, int threads,
            boolean bypass) {
        return new FrameCache(manifestPath, true, mode, threshold, tile, threads, bypass);
    }

    /**
     * Processes a YUV_420_888 frame as CameraX delivers it: three direct buffers with their
     * strides (NV21, NV12 or I420 underneath). {@code rotation}: degrees clockwise (0, 90, 180,
     * 270), from {@code ImageInfo.getRotationDegrees()}.
     */
    public void pushYuv420(ByteBuffer y, int yRowStride, ByteBuffer u, ByteBuffer v, int uvRowStride,
            int uvPixelStride, int width, int height, int rotation) {
        nativePushYuv(handle, y, yRowStride, u, v, uvRowStride, uvPixelStride, width, height, rotation);
    }

    /** Processes an RGBA frame (direct buffer, 4 bytes per pixel, rows {@code rowStride} apart). */
    public void pushRgba(ByteBuffer rgba, int width, int height, int rowStride, int rotation) {
        nativePushRgba(handle, rgba, width, height, rowStride, rotation);
    }

    /** Statistics of the last frame. */
    public Stats stats() {
        return new Stats(nativeStats(handle));
    }

    /** Per input tile of the last frame: 1 recomputed, 0 reused (row-major, Stats.tileCols wide). */
    public byte[] tileMap() {
        return nativeTileMap(handle);
    }

    /** Top classes of the first head, best first (empty when the model is not a classifier). */
    public String[] topLabels() {
        return topLabels(0);
    }

    public float[] topScores() {
        return topScores(0);
    }

    /** The first head's segmentation mask ({@code size[0]} wide, {@code size[1]} high), or null. */
    public float[] mask(int[] size) {
        return mask(0, size);
    }

    /** Heads: a model's outputs, or every head of a bundle in manifest order. */
    public int headCount() {
        return nativeHeadCount(handle);
    }

    /** Head {@code head} on the last frame: name, kind, size and status. */
    public Head head(int head) {
        int[] fields = new int[5];
        String name = nativeHead(handle, head, fields);
        return new Head(name, fields);
    }

    public String[] topLabels(int head) {
        return nativeTopLabels(handle, head);
    }

    public float[] topScores(int head) {
        return nativeTopScores(handle, head);
    }

    public float[] mask(int head, int[] size) {
        return nativeMask(handle, head, size);
    }

    /** A detection head's boxes, 5 floats each: score, xmin, ymin, xmax, ymax in frame pixels. */
    public float[] boxes(int head) {
        return nativeBoxes(handle, head);
    }

    /** A keypoint head's landmarks, 4 floats each: x, y in frame pixels, z, visibility (-1: none). */
    public float[] keypoints(int head) {
        return nativeKeypoints(handle, head);
    }

    /** What {@code fc_engine_head_status} and {@code fc_engine_head_info} report. */
    public static final class Head {
        public final String name;
        /** {@code HEAD_CLASSES} ... {@code HEAD_KEYPOINTS}. */
        public final int kind;
        public final int count;
        public final int width;
        public final int height;
        /** {@code HEAD_COMPUTED}, {@code HEAD_UNCHANGED} or {@code HEAD_SKIPPED}. */
        public final int status;

        Head(String name, int[] v) {
            this.name = name;
            kind = v[0];
            count = v[1];
            width = v[2];
            height = v[3];
            status = v[4];
        }
    }

    @Override
    public void close() {
        if (handle != 0) {
            nativeDestroy(handle);
            handle = 0;
        }
    }

    /** What {@code fc_engine_stats} reports. */
    public static final class Stats {
        public final long frameIndex;
        public final boolean cacheReset;
        public final double inputHitRate;
        public final double macSaving;
        public final double engineMs;
        public final int tileRows;
        public final int tileCols;
        public final int inputWidth;
        public final int inputHeight;
        /** The part of the (rotated) frame the model sees, in frame pixels. */
        public final float regionX;
        public final float regionY;
        public final float regionWidth;
        public final float regionHeight;
        public final int frameWidth;
        public final int frameHeight;
        /** Tile side in model-input pixels (the last row and column may be smaller). */
        public final int tileSize;

        Stats(double[] v) {
            frameIndex = (long) v[0];
            cacheReset = v[1] != 0;
            inputHitRate = v[2];
            macSaving = v[3];
            engineMs = v[4];
            tileRows = (int) v[5];
            tileCols = (int) v[6];
            inputWidth = (int) v[7];
            inputHeight = (int) v[8];
            regionX = (float) v[9];
            regionY = (float) v[10];
            regionWidth = (float) v[11];
            regionHeight = (float) v[12];
            frameWidth = (int) v[13];
            frameHeight = (int) v[14];
            tileSize = (int) v[15];
        }
    }

    private static native long nativeCreate(String path, boolean bundle, int mode, float threshold, int tile,
            int threads, boolean bypass);

    private static native void nativePushYuv(long handle, ByteBuffer y, int yRowStride, ByteBuffer u, ByteBuffer v,
            int uvRowStride, int uvPixelStride, int width, int height, int rotation);

    private static native void nativePushRgba(long handle, ByteBuffer rgba, int width, int height, int rowStride,
            int rotation);

    private static native double[] nativeStats(long handle);

    private static native byte[] nativeTileMap(long handle);

    private static native String[] nativeTopLabels(long handle, int head);

    private static native float[] nativeTopScores(long handle, int head);

    private static native float[] nativeMask(long handle, int head, int[] size);

    private static native int nativeHeadCount(long handle);

    private static native String nativeHead(long handle, int head, int[] fields);

    private static native float[] nativeBoxes(long handle, int head);

    private static native float[] nativeKeypoints(long handle, int head);

    private static native void nativeDestroy(long handle);
}
