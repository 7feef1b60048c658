package org.egoedge.demo

import org.egoedge.demo.core.BenchResult
import org.egoedge.demo.runtime.ExecuTorchRunner
import org.egoedge.demo.runtime.LiteRtRunner
import org.egoedge.demo.runtime.ModelRunner
import org.egoedge.demo.runtime.RunnerFactory
import org.egoedge.demo.runtime.RunnerOptions
import java.io.File

/** The runtimes this app links, by manifest format: a new runtime is one runner class and one line here. */
object Runners {
    private val registry: Map<String, RunnerFactory> = mapOf(
        "executorch" to ::ExecuTorchRunner,
        "tflite" to ::LiteRtRunner,
    )

    val formats: Set<String> get() = registry.keys

    /** Runtimes whose thread count sizes one pool for the whole process (a second model must not resize it). */
    private val processWideThreads = setOf("executorch")

    /** Threads for a streaming pair's tiny temporal head: the manifest's `head_threads`, or the encoder's on a shared pool. */
    fun headThreads(format: String, encoderThreads: Int, headThreads: Int): Int =
        if (format in processWideThreads) encoderThreads else headThreads

    fun open(file: File, format: String, options: RunnerOptions, inputShape: LongArray?): ModelRunner {
        val factory = registry[format]
            ?: throw IllegalArgumentException("no runner for '$format' (this app runs ${formats.joinToString()})")
        return factory(file, options, inputShape)
    }

    /** Opens a file by its extension (the benchmark activity is given paths, not manifest entries). */
    fun open(file: File, options: RunnerOptions, inputShape: LongArray?): ModelRunner {
        val format = BenchResult.formatOf(file.name)
            ?: throw IllegalArgumentException("${file.name}: not a .pte or .tflite file")
        return open(file, format, options, inputShape)
    }
}
