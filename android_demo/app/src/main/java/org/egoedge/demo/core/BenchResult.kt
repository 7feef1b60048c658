package org.egoedge.demo.core

/**
 * The benchmark protocol's result (egoedge `edge/schemas/app_result.schema.json`, protocol 1):
 * the host report's fields for one row, every timed run, and the logits of the given clips. A
 * streaming pair's result adds `streaming` (`window`, `head`): its timed runs are one new frame each.
 */
object BenchResult {
    const val PROTOCOL = 1
    val PRECISIONS = listOf("fp32", "fp16", "int8", "w8", "w8a8")
    private val FORMATS = mapOf("pte" to "executorch", "tflite" to "tflite")

    /** The format of an artifact file, from its extension (`null`: the app cannot run it). */
    fun formatOf(fileName: String): String? = FORMATS[fileName.substringAfterLast('.', "").lowercase()]

    /** The precision from egoedge's artifact naming, `{model}_{backend}_{precision}.{ext}`. */
    fun precisionOf(fileName: String): String =
        fileName.substringBeforeLast('.').substringAfterLast('_').takeIf { it in PRECISIONS } ?: "unknown"

    fun ok(
        name: String,
        format: String,
        precision: String,
        device: String,
        runtime: String,
        threads: Int,
        sizeBytes: Long,
        loadMs: Double,
        samplesMs: DoubleArray,
        warmup: Int,
        peakRssMb: Double?,
        logits: List<FloatArray>?,
        streaming: Map<String, Any?>? = null,
    ): Map<String, Any?> = linkedMapOf<String, Any?>(
        "protocol" to PROTOCOL, "status" to "ok", "error" to null,
        "name" to name, "format" to format, "precision" to precision, "device" to device, "runtime" to runtime,
        "threads" to threads, "size_bytes" to sizeBytes, "load_ms" to loadMs,
        "latency_ms" to LatencyStats.of(samplesMs, warmup).toMap(),
        "latency_samples_ms" to samplesMs, "peak_rss_mb" to peakRssMb,
    ).also {
        if (logits != null) it["logits"] = logits
        if (streaming != null) it["streaming"] = streaming
    }

    fun error(message: String): Map<String, Any?> =
        linkedMapOf("protocol" to PROTOCOL, "status" to "error", "error" to message.ifBlank { "unknown error" })
}
