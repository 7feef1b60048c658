package org.egoedge.demo.core

import java.nio.ByteBuffer
import java.nio.ByteOrder

/** The benchmark protocol's `inputs`: raw little-endian float32 clips of shape `input_shape`. */
object Inputs {
    /** "N,T,3,H,W" -> [N, T, 3, H, W]; every dimension must be positive. */
    fun parseShape(text: String): LongArray {
        val dims = text.split(',').map { it.trim().toLongOrNull() ?: throw IllegalArgumentException("bad input_shape '$text'") }
        require(dims.size >= 2 && dims.all { it > 0 }) { "input_shape '$text' must be N,<clip dims> with positive sizes" }
        return dims.toLongArray()
    }

    /** Splits the file's bytes into N clips of the remaining dimensions. */
    fun clips(bytes: ByteArray, shape: LongArray): List<FloatArray> {
        val perClip = shape.drop(1).fold(1L) { a, b -> a * b }
        val n = shape[0]
        require(bytes.size.toLong() == n * perClip * 4) {
            "inputs hold ${bytes.size} bytes; ${shape.joinToString(",")} float32 needs ${n * perClip * 4}"
        }
        val floats = ByteBuffer.wrap(bytes).order(ByteOrder.LITTLE_ENDIAN).asFloatBuffer()
        return List(n.toInt()) { FloatArray(perClip.toInt()).also { clip -> floats.get(clip) } }
    }
}
