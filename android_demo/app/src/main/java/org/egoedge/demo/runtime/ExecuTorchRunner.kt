package org.egoedge.demo.runtime

import org.egoedge.demo.BuildConfig
import org.pytorch.executorch.EValue
import org.pytorch.executorch.Module
import org.pytorch.executorch.Tensor
import java.io.File

/** A `.pte` program lowered to XNNPACK, run by the ExecuTorch AAR; the file is memory-mapped. */
class ExecuTorchRunner(file: File, options: RunnerOptions, override val inputShape: LongArray?) : ModelRunner {
    private val module: Module = Module.load(file.absolutePath, Module.LOAD_MODE_MMAP, options.threads)

    override val runtime = "executorch-android ${BuildConfig.EXECUTORCH_VERSION} (xnnpack)"

    override fun run(clip: FloatArray): FloatArray {
        val shape = inputShape ?: error("the input shape of ${module.getMethods().joinToString()} is unknown")
        val outputs = module.forward(EValue.from(Tensor.fromBlob(clip, shape)))
        check(outputs.isNotEmpty()) { "forward returned nothing (see logcat tag ExecuTorch)" }
        return outputs[0].toTensor().dataAsFloatArray
    }

    override fun runAll(inputs: List<FloatArray>, shapes: List<LongArray>): List<FloatArray> {
        require(inputs.size == shapes.size) { "${inputs.size} inputs but ${shapes.size} shapes" }
        val values = inputs.zip(shapes) { x, shape -> EValue.from(Tensor.fromBlob(x, shape)) }
        val outputs = module.forward(*values.toTypedArray())
        check(outputs.isNotEmpty()) { "forward returned nothing (see logcat tag ExecuTorch)" }
        return outputs.map { it.toTensor().dataAsFloatArray }
    }

    // Without inputs ExecuTorch runs forward on inputs of the program's own shapes.
    override fun runWithoutData(): FloatArray =
        inputShape?.let { run(FloatArray(it.fold(1L) { a, b -> a * b }.toInt())) }
            ?: module.forward()[0].toTensor().dataAsFloatArray

    override fun close() = module.destroy()
}
