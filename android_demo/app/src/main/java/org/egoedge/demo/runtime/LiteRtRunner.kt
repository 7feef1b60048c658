package org.egoedge.demo.runtime

import org.egoedge.demo.BuildConfig
import org.egoedge.demo.core.Quant
import org.egoedge.demo.core.QuantParams
import org.tensorflow.lite.DataType
import org.tensorflow.lite.Interpreter
import org.tensorflow.lite.Tensor
import java.io.File
import java.io.RandomAccessFile
import java.nio.ByteBuffer
import java.nio.ByteOrder
import java.nio.channels.FileChannel

/**
 * A `.tflite` model run by LiteRT's Interpreter API, which (unlike CompiledModel) takes an explicit
 * thread count and an XNNPACK switch -- the two knobs the host bench sets too.
 * Full-integer models take int8 input: the clip is quantised with the tensor's own parameters.
 */
class LiteRtRunner(file: File, options: RunnerOptions, shape: LongArray?) : ModelRunner {
    private val interpreter = Interpreter(
        map(file),
        Interpreter.Options().setNumThreads(options.threads).setUseXNNPACK(options.xnnpack),
    )
    private val inTensor: Tensor = interpreter.getInputTensor(0)
    private val outTensor: Tensor = interpreter.getOutputTensor(0)
    private val inQuant = quant(inTensor)
    private val outQuant = quant(outTensor)
    private val inBuffer = ByteBuffer.allocateDirect(inTensor.numBytes()).order(ByteOrder.nativeOrder())
    private val outBuffer = ByteBuffer.allocateDirect(outTensor.numBytes()).order(ByteOrder.nativeOrder())

    override val runtime = "litert ${BuildConfig.LITERT_VERSION} (${if (options.xnnpack) "xnnpack" else "builtin"})"
    override val inputShape: LongArray = inTensor.shape().map { it.toLong() }.toLongArray()

    init {
        if (shape != null) require(shape.contentEquals(inputShape)) {
            "the model takes ${inputShape.joinToString(",")}, the inputs are ${shape.joinToString(",")}"
        }
    }

    override fun run(clip: FloatArray): FloatArray {
        require(clip.size == inTensor.numElements()) { "the model takes ${inTensor.numElements()} values, got ${clip.size}" }
        inBuffer.rewind()
        if (inQuant != null) inBuffer.put(Quant.quantize(clip, inQuant)) else inBuffer.asFloatBuffer().put(clip)
        inBuffer.rewind()
        outBuffer.rewind()
        interpreter.run(inBuffer, outBuffer)
        outBuffer.rewind()
        return if (outQuant != null) {
            Quant.dequantize(ByteArray(outTensor.numElements()).also { outBuffer.get(it) }, outQuant)
        } else {
            FloatArray(outTensor.numElements()).also { outBuffer.asFloatBuffer().get(it) }
        }
    }

    override fun runWithoutData(): FloatArray = run(FloatArray(inTensor.numElements()))

    // Allocated on the first runAll and reused: a streaming step runs once per camera frame.
    private val inBuffers by lazy { List(interpreter.inputTensorCount) { direct(interpreter.getInputTensor(it)) } }
    private val outBuffers by lazy { (0 until interpreter.outputTensorCount).associateWith { direct(interpreter.getOutputTensor(it)) } }

    override fun runAll(inputs: List<FloatArray>, shapes: List<LongArray>): List<FloatArray> {
        require(inputs.size == interpreter.inputTensorCount) {
            "the model takes ${interpreter.inputTensorCount} inputs, got ${inputs.size}"
        }
        inputs.forEachIndexed { i, x ->
            val t = interpreter.getInputTensor(i)
            require(x.size == t.numElements()) { "input ${t.name()} takes ${t.numElements()} values, got ${x.size}" }
            val q = quant(t)
            val b = inBuffers[i]
            b.rewind()
            if (q != null) b.put(Quant.quantize(x, q)) else b.asFloatBuffer().put(x)
            b.rewind()
        }
        outBuffers.values.forEach { it.rewind() }
        interpreter.runForMultipleInputsOutputs(inBuffers.toTypedArray<Any>(), outBuffers)
        return outBuffers.map { (i, b) ->
            val t = interpreter.getOutputTensor(i)
            val q = quant(t)
            b.rewind()
            if (q != null) Quant.dequantize(ByteArray(t.numElements()).also { b.get(it) }, q)
            else FloatArray(t.numElements()).also { b.asFloatBuffer().get(it) }
        }
    }

    override fun close() = interpreter.close()

    private companion object {
        fun map(file: File): ByteBuffer = RandomAccessFile(file, "r").use {
            it.channel.map(FileChannel.MapMode.READ_ONLY, 0, it.length())
        }

        fun direct(t: Tensor): ByteBuffer = ByteBuffer.allocateDirect(t.numBytes()).order(ByteOrder.nativeOrder())

        fun quant(t: Tensor): QuantParams? = when (t.dataType()) {
            DataType.INT8 -> t.quantizationParams().let { QuantParams(it.scale, it.zeroPoint) }
            DataType.FLOAT32 -> null
            else -> throw IllegalArgumentException("tensor ${t.name()} is ${t.dataType()}; the app runs float32 and int8")
        }
    }
}
