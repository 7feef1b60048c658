package org.egoedge.demo.core

/**
 * What the model is fed, from the manifest's `preprocess` block.
 *
 * The steps and their float32 arithmetic mirror `edge/preprocess.py` in the egoedge repo, the
 * reference the exported artifacts were verified against; change one, change both.
 */
class PreprocessSpec(
    val height: Int,
    val width: Int,
    val mean: FloatArray,
    val std: FloatArray,
    val frames: Int,
    val layout: String = "NTCHW",
) {
    init {
        require(height > 0 && width > 0 && frames > 0) { "size and frames must be positive" }
        require(mean.size == 3 && std.size == 3) { "mean and std need one value per RGB channel" }
        require(std.all { it > 0f }) { "std must be positive" }
        require(layout in LAYOUTS) { "unknown layout $layout (known: ${LAYOUTS.joinToString()})" }
    }

    /** Floats in one preprocessed clip (batch 1). */
    val clipSize: Int get() = frames * 3 * height * width

    /** The input shape the model takes, batch 1. */
    val shape: LongArray
        get() = if (layout == "NTCHW") longArrayOf(1, frames.toLong(), 3, height.toLong(), width.toLong())
        else longArrayOf(1, frames.toLong(), height.toLong(), width.toLong(), 3)

    companion object {
        val LAYOUTS = listOf("NTCHW", "NTHWC")
    }
}

/** One RGB frame, interleaved bytes in row-major (H, W, 3) order. */
class Frame(val width: Int, val height: Int, val rgb: ByteArray) {
    init {
        require(width > 0 && height > 0) { "empty frame" }
        require(rgb.size == width * height * 3) { "a ${width}x$height RGB frame needs ${width * height * 3} bytes, got ${rgb.size}" }
    }

    companion object {
        /** From packed ARGB pixels as `Bitmap.getPixels` returns them; alpha is dropped. */
        fun fromArgb(pixels: IntArray, width: Int, height: Int): Frame {
            require(pixels.size == width * height) { "expected ${width * height} pixels, got ${pixels.size}" }
            val rgb = ByteArray(pixels.size * 3)
            for (i in pixels.indices) {
                val p = pixels[i]
                rgb[3 * i] = (p shr 16 and 0xFF).toByte()
                rgb[3 * i + 1] = (p shr 8 and 0xFF).toByte()
                rgb[3 * i + 2] = (p and 0xFF).toByte()
            }
            return Frame(width, height, rgb)
        }

        /** `count` frames stored back to back as raw (T, H, W, 3) bytes, like the embedded sample clip. */
        fun splitClip(bytes: ByteArray, count: Int, height: Int, width: Int): List<Frame> {
            val size = height * width * 3
            require(bytes.size == count * size) { "a $count-frame ${height}x$width clip is ${count * size} bytes, got ${bytes.size}" }
            return List(count) { Frame(width, height, bytes.copyOfRange(it * size, (it + 1) * size)) }
        }
    }
}

object Preprocess {
    /** `[top, left, height, width]` of the largest centred box with the aspect ratio dstH:dstW (integer maths). */
    fun centerCropBox(srcH: Int, srcW: Int, dstH: Int, dstW: Int): IntArray {
        require(srcH > 0 && srcW > 0 && dstH > 0 && dstW > 0) { "cannot crop ${srcH}x$srcW to ${dstH}x$dstW" }
        return if (srcW.toLong() * dstH > srcH.toLong() * dstW) {
            val w = (srcH.toLong() * dstW / dstH).toInt()
            intArrayOf(0, (srcW - w) / 2, srcH, w)
        } else {
            val h = (srcW.toLong() * dstH / dstW).toInt()
            intArrayOf((srcH - h) / 2, 0, h, srcW)
        }
    }

    private class Axis(val i0: IntArray, val i1: IntArray, val weight: FloatArray)

    // Half-pixel centres, clamped at 0, no antialiasing: PyTorch's bilinear with align_corners=False.
    private fun axis(src: Int, dst: Int): Axis {
        val scale = src.toFloat() / dst.toFloat()
        val i0 = IntArray(dst)
        val i1 = IntArray(dst)
        val w = FloatArray(dst)
        for (o in 0 until dst) {
            val pos = maxOf((o.toFloat() + 0.5f) * scale - 0.5f, 0f)
            i0[o] = pos.toInt()
            i1[o] = minOf(i0[o] + 1, src - 1)
            w[o] = pos - i0[o].toFloat()
        }
        return Axis(i0, i1, w)
    }

    /** The `box` of `frame` resized to (dstH, dstW, 3) floats in 0..255. */
    fun resizeBilinear(frame: Frame, box: IntArray, dstH: Int, dstW: Int): FloatArray {
        val (top, left, h, w) = box
        require(top >= 0 && left >= 0 && top + h <= frame.height && left + w <= frame.width) { "crop box outside the frame" }
        val ys = axis(h, dstH)
        val xs = axis(w, dstW)
        val out = FloatArray(dstH * dstW * 3)
        fun px(y: Int, x: Int, c: Int): Float =
            (frame.rgb[((top + y) * frame.width + left + x) * 3 + c].toInt() and 0xFF).toFloat()
        for (oy in 0 until dstH) {
            val wy = ys.weight[oy]
            for (ox in 0 until dstW) {
                val wx = xs.weight[ox]
                for (c in 0 until 3) {
                    // Same association as the reference: along x on both rows, then along y.
                    val upper = (1f - wx) * px(ys.i0[oy], xs.i0[ox], c) + wx * px(ys.i0[oy], xs.i1[ox], c)
                    val lower = (1f - wx) * px(ys.i1[oy], xs.i0[ox], c) + wx * px(ys.i1[oy], xs.i1[ox], c)
                    out[(oy * dstW + ox) * 3 + c] = (1f - wy) * upper + wy * lower
                }
            }
        }
        return out
    }

    /**
     * One frame of any size -> a streaming pair's frame-encoder input (`1,3,H,W`, or `1,H,W,3` for
     * NTHWC): the same floats as that frame's slice of [clip], so the pair sees what the clip model sees.
     */
    fun frame(frame: Frame, spec: PreprocessSpec): FloatArray =
        clip(listOf(frame), PreprocessSpec(spec.height, spec.width, spec.mean, spec.std, 1, spec.layout))

    /** Frames of any size -> one model input (batch 1) in the spec's layout, normalised. */
    fun clip(frames: List<Frame>, spec: PreprocessSpec): FloatArray {
        require(frames.size == spec.frames) { "the model takes ${spec.frames} frames, got ${frames.size}" }
        val h = spec.height
        val w = spec.width
        val out = FloatArray(spec.clipSize)
        val plane = h * w
        for ((t, frame) in frames.withIndex()) {
            val box = centerCropBox(frame.height, frame.width, h, w)
            val hwc = resizeBilinear(frame, box, h, w)
            for (i in 0 until plane) {
                for (c in 0 until 3) {
                    val v = (hwc[3 * i + c] / 255f - spec.mean[c]) / spec.std[c]
                    val index = if (spec.layout == "NTCHW") (t * 3 + c) * plane + i else (t * plane + i) * 3 + c
                    out[index] = v
                }
            }
        }
        return out
    }
}
