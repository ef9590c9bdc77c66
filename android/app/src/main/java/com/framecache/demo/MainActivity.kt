package com.framecache.demo

import android.Manifest
import android.content.pm.PackageManager
import android.os.Bundle
import android.util.Log
import android.widget.TextView
import android.widget.ToggleButton
import androidx.appcompat.app.AppCompatActivity
import androidx.camera.core.CameraSelector
import androidx.camera.core.ImageAnalysis
import androidx.camera.core.ImageProxy
import androidx.camera.core.Preview
import androidx.camera.lifecycle.ProcessCameraProvider
import androidx.camera.view.PreviewView
import androidx.core.app.ActivityCompat
import androidx.core.content.ContextCompat
import com.framecache.FrameCache
import java.io.File
import java.util.concurrent.Executors

/**
 * CameraX preview plus an ImageAnalysis stream (KEEP_ONLY_LATEST: stale frames are dropped, as in
 * the desktop demo) whose YUV_420_888 planes go straight to the engine through JNI. The overlay
 * shows recomputed and reused tiles and the person mask; the text lists every head of the bundle
 * (ImageNet classes, and the person and face masks distilled onto MobileNetV2's shared backbone)
 * with live statistics.
 */
class MainActivity : AppCompatActivity() {
    private val analysis = Executors.newSingleThreadExecutor()
    private var engine: FrameCache? = null
    @Volatile private var mode = FrameCache.MODE_BLOCK_THRESHOLD
    private var engineMode = -1
    private lateinit var overlay: OverlayView
    private lateinit var stats: TextView
    private var frames = 0L
    private var windowStart = System.nanoTime()

    override fun onCreate(savedInstanceState: Bundle?) {
        super.onCreate(savedInstanceState)
        setContentView(R.layout.activity_main)
        overlay = findViewById(R.id.overlay)
        stats = findViewById(R.id.stats)
        findViewById<ToggleButton>(R.id.mode).setOnCheckedChangeListener { _, on ->
            mode = if (on) FrameCache.MODE_BLOCK_THRESHOLD else FrameCache.MODE_EXACT
        }
        if (ContextCompat.checkSelfPermission(this, Manifest.permission.CAMERA) == PackageManager.PERMISSION_GRANTED) {
            startCamera()
        } else {
            ActivityCompat.requestPermissions(this, arrayOf(Manifest.permission.CAMERA), 1)
        }
    }

    override fun onRequestPermissionsResult(code: Int, permissions: Array<out String>, results: IntArray) {
        super.onRequestPermissionsResult(code, permissions, results)
        if (results.firstOrNull() == PackageManager.PERMISSION_GRANTED) {
            startCamera()
        } else {
            stats.text = "camera permission denied: framecache needs the camera to run"
        }
    }

    /** The bundle is an APK asset, one bundle file with its models and labels inside; the engine reads files, so copy it once. */
    private fun bundleFile(): File {
        val out = File(filesDir, "mobilenet_v2_shared.fcbundle")
        if (!out.exists()) assets.open(out.name).use { input -> out.outputStream().use { input.copyTo(it) } }
        return out
    }

    private fun startCamera() {
        val future = ProcessCameraProvider.getInstance(this)
        future.addListener({
            val provider = future.get()
            val preview = Preview.Builder().build().also {
                it.setSurfaceProvider(findViewById<PreviewView>(R.id.preview).surfaceProvider)
            }
            val imageAnalysis = ImageAnalysis.Builder()
                .setBackpressureStrategy(ImageAnalysis.STRATEGY_KEEP_ONLY_LATEST)
                .setOutputImageFormat(ImageAnalysis.OUTPUT_IMAGE_FORMAT_YUV_420_888)
                .build()
            imageAnalysis.setAnalyzer(analysis) { image -> analyze(image) }
            provider.unbindAll()
            provider.bindToLifecycle(this, CameraSelector.DEFAULT_BACK_CAMERA, preview, imageAnalysis)
        }, ContextCompat.getMainExecutor(this))
    }

    private fun analyze(image: ImageProxy) {
        image.use {
            try {
                if (engine == null || engineMode != mode) {
                    engine?.close()
                    engine = FrameCache.bundle(bundleFile().path, mode, 8f, 16, 0, true)
                    engineMode = mode
                }
                val fc = engine!!
                val (y, u, v) = Triple(it.planes[0], it.planes[1], it.planes[2])
                fc.pushYuv420(
                    y.buffer, y.rowStride, u.buffer, v.buffer, u.rowStride, u.pixelStride,
                    it.width, it.height, it.imageInfo.rotationDegrees,
                )
                val s = fc.stats()
                val tiles = fc.tileMap()
                // Every head of the model (or bundle): its name, whether it ran, and its result.
                val heads = (0 until fc.headCount()).joinToString("\n") { k -> describe(fc, k) }
                // The first mask head, drawn over the preview.
                val maskHead = (0 until fc.headCount()).firstOrNull { k -> fc.head(k).kind == FrameCache.HEAD_MASK }
                val maskSize = IntArray(2)
                val mask = maskHead?.let { k -> fc.mask(k, maskSize) }
                frames++
                val now = System.nanoTime()
                val fps = frames * 1e9 / (now - windowStart)
                if (now - windowStart > 2_000_000_000L) { frames = 0; windowStart = now }
                val text = String.format(
                    "%s  %.1f fps  engine %.1f ms\nhit %.0f%%  MAC saving %.0f%%\n%s",
                    if (engineMode == FrameCache.MODE_EXACT) "exact" else "block-threshold 8",
                    fps, s.engineMs, 100 * s.inputHitRate, 100 * s.macSaving, heads,
                )
                runOnUiThread {
                    overlay.show(s, tiles, mask, maskSize[0], maskSize[1])
                    stats.text = text
                }
            } catch (e: RuntimeException) {
                Log.e("framecache", "frame failed", e)
                runOnUiThread { stats.text = "engine: ${e.message}" }
            }
        }
    }

    /** One line per head: its name, a mark when its last result was held, and what it found. */
    private fun describe(fc: FrameCache, k: Int): String {
        val head = fc.head(k)
        val held = if (head.status == FrameCache.HEAD_COMPUTED) "" else " (held)"
        val result = when (head.kind) {
            FrameCache.HEAD_CLASSES -> {
                val labels = fc.topLabels(k)
                val scores = fc.topScores(k)
                labels.indices.take(3).joinToString(", ") { i -> String.format("%s %.0f%%", labels[i], 100 * scores[i]) }
            }
            FrameCache.HEAD_MASK -> {
                val size = IntArray(2)
                val mask = fc.mask(k, size)
                String.format("%.0f%% of the view", 100.0 * mask.count { it > 0.5f } / mask.size.coerceAtLeast(1))
            }
            FrameCache.HEAD_DETECTIONS -> "${fc.boxes(k).size / 5} found"
            FrameCache.HEAD_KEYPOINTS -> "${fc.keypoints(k).size / 4} points"
            else -> "${head.count} values"
        }
        return "${head.name}$held: $result"
    }

    override fun onDestroy() {
        super.onDestroy()
        analysis.execute { engine?.close(); engine = null }
        analysis.shutdown()
    }
}
