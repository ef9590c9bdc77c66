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

    private long handle;

    /** Loads an ONNX model; its sidecar {@code <model>.toml} must sit beside it. */
    public FrameCache(String modelPath, int mode, float threshold, int tile, int threads) {
        handle = nativeCreate(modelPath, mode, threshold, tile, threads);
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
        return nativeTopLabels(handle);
    }

    public float[] topScores() {
        return nativeTopScores(handle);
    }

    /** The first head's segmentation mask ({@code size[0]} wide, {@code size[1]} high), or null. */
    public float[] mask(int[] size) {
        return nativeMask(handle, size);
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

    private static native long nativeCreate(String modelPath, int mode, float threshold, int tile, int threads);

    private static native void nativePushYuv(long handle, ByteBuffer y, int yRowStride, ByteBuffer u, ByteBuffer v,
            int uvRowStride, int uvPixelStride, int width, int height, int rotation);

    private static native void nativePushRgba(long handle, ByteBuffer rgba, int width, int height, int rowStride,
            int rotation);

    private static native double[] nativeStats(long handle);

    private static native byte[] nativeTileMap(long handle);

    private static native String[] nativeTopLabels(long handle);

    private static native float[] nativeTopScores(long handle);

    private static native float[] nativeMask(long handle, int[] size);

    private static native void nativeDestroy(long handle);
}
