package org.egoedge.demo.runtime

import java.io.File

/** How a runtime should run: the benchmark protocol's `threads` and `xnnpack`. */
data class RunnerOptions(val threads: Int, val xnnpack: Boolean = true) {
    init {
        require(threads >= 1) { "threads must be >= 1, got $threads" }
    }
}

/**
 * One loaded model. `run` takes one preprocessed float clip (batch 1, the manifest's layout) and
 * returns float logits; a runtime whose tensors are int8 quantises and dequantises inside.
 */
interface ModelRunner : AutoCloseable {
    /** Runtime and version, e.g. "executorch-android 1.5.1 (xnnpack)". */
    val runtime: String

    /** The input shape the model was built for, when the runtime can tell (null: ask the manifest). */
    val inputShape: LongArray?

    fun run(clip: FloatArray): FloatArray

    /**
     * Several float inputs in the model's input order (a streaming pair's temporal head takes the
     * window of embeddings and its valid mask), each of the given shape; the first output back.
     */
    fun runInputs(inputs: List<FloatArray>, shapes: List<LongArray>): FloatArray = runAll(inputs, shapes)[0]

    /** [runInputs] with every output back, in the model's output order (a streaming step's logits and next state). */
    fun runAll(inputs: List<FloatArray>, shapes: List<LongArray>): List<FloatArray>

    /** One run on whatever input the runtime can make up (a zero clip): for timing without data. */
    fun runWithoutData(): FloatArray
}

/** Opens an artifact file with the runtime of its format. */
typealias RunnerFactory = (file: File, options: RunnerOptions, inputShape: LongArray?) -> ModelRunner
