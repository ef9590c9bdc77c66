package com.framecache.demo

import android.content.Context
import android.graphics.Canvas
import android.graphics.Color
import android.graphics.Paint
import android.util.AttributeSet
import android.view.View
import com.framecache.FrameCache

/**
 * Draws the tiles of the last frame over the preview, red where the engine recomputed, green
 * where it reused its cache, and the cells of a mask head where it is above one half, in blue.
 * Tiles are in model-input pixels and the mask spans the model input; the stats' region maps
 * them onto the (rotated) camera frame, which the preview shows fitted to this view.
 */
class OverlayView(context: Context, attrs: AttributeSet?) : View(context, attrs) {
    private var stats: FrameCache.Stats? = null
    private var tiles: ByteArray = ByteArray(0)
    private var mask: FloatArray? = null
    private var maskWidth = 0
    private var maskHeight = 0
    private val person = Paint().apply { color = Color.argb(110, 40, 120, 255) }
    private val recomputed = Paint().apply { color = Color.argb(90, 230, 40, 40) }
    private val reused = Paint().apply { color = Color.argb(40, 40, 230, 90) }

    fun show(s: FrameCache.Stats, map: ByteArray, probs: FloatArray?, width: Int, height: Int) {
        stats = s
        tiles = map
        mask = probs
        maskWidth = width
        maskHeight = height
        invalidate()
    }

    override fun onDraw(canvas: Canvas) {
        super.onDraw(canvas)
        val s = stats ?: return
        if (tiles.size != s.tileRows * s.tileCols || s.frameWidth == 0) return
        // PreviewView fitCenter: the frame is scaled to fit and centred.
        val scale = minOf(width.toFloat() / s.frameWidth, height.toFloat() / s.frameHeight)
        val ox = (width - s.frameWidth * scale) / 2 + s.regionX * scale
        val oy = (height - s.frameHeight * scale) / 2 + s.regionY * scale
        val sx = s.regionWidth * scale / s.inputWidth
        val sy = s.regionHeight * scale / s.inputHeight
        val tile = s.tileSize.toFloat()
        for (r in 0 until s.tileRows) {
            for (c in 0 until s.tileCols) {
                val x0 = c * tile
                val y0 = r * tile
                val x1 = minOf(x0 + tile, s.inputWidth.toFloat())
                val y1 = minOf(y0 + tile, s.inputHeight.toFloat())
                val paint = if (tiles[r * s.tileCols + c].toInt() != 0) recomputed else reused
                canvas.drawRect(ox + x0 * sx, oy + y0 * sy, ox + x1 * sx - 1, oy + y1 * sy - 1, paint)
            }
        }
        val m = mask ?: return
        if (maskWidth == 0 || maskHeight == 0 || m.size != maskWidth * maskHeight) return
        val cw = s.inputWidth * sx / maskWidth
        val ch = s.inputHeight * sy / maskHeight
        for (r in 0 until maskHeight) {
            for (c in 0 until maskWidth) {
                if (m[r * maskWidth + c] > 0.5f) {
                    canvas.drawRect(ox + c * cw, oy + r * ch, ox + (c + 1) * cw, oy + (r + 1) * ch, person)
                }
            }
        }
    }
}
