package org.egoedge.demo.core

import kotlin.math.abs
import kotlin.math.floor
import kotlin.math.sign

/** Affine int8 parameters of a tensor: real = (q - zeroPoint) * scale. */
data class QuantParams(val scale: Float, val zeroPoint: Int) {
    init {
        require(scale > 0f) { "quantisation scale must be > 0, got $scale" }
    }
}

object Quant {
    /** float -> int8 with ties away from zero, as LiteRT's quantize kernel and `edge/preprocess.py` round. */
    fun quantize(x: FloatArray, q: QuantParams): ByteArray = ByteArray(x.size) {
        val v = x[it] / q.scale
        val rounded = sign(v) * floor(abs(v) + 0.5f)
        (rounded + q.zeroPoint).coerceIn(-128f, 127f).toInt().toByte()
    }

    /** int8 -> float. */
    fun dequantize(data: ByteArray, q: QuantParams): FloatArray =
        FloatArray(data.size) { (data[it].toFloat() - q.zeroPoint.toFloat()) * q.scale }
}
