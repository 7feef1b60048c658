package org.egoedge.demo

import android.app.Activity
import android.os.Build
import android.os.Bundle
import android.os.SystemClock
import android.util.Log
import org.egoedge.demo.core.BenchResult
import org.egoedge.demo.core.Inputs
import org.egoedge.demo.core.Json
import org.egoedge.demo.core.SafePaths
import org.egoedge.demo.runtime.RunnerOptions
import java.io.File
import kotlin.concurrent.thread

/**
 * The benchmark protocol (egoedge `bench/device_runners/app.py`, version 1): started with intent extras,
 * it loads one model, warms up, times `iterations` runs, optionally runs the given clips for
 * accuracy, writes the result JSON (temp file, then rename) and finishes. `egoedge bench --device
 * android` drives it; by hand:
 *
 *     adb shell am start -W -S -n org.egoedge.demo/org.egoedge.demo.BenchmarkActivity \
 *         --es model /sdcard/Android/data/org.egoedge.demo/files/egoedge/student_tflite_int8.tflite \
 *         --ei iterations 50 --ei warmup 5 --ei threads 4 --ez xnnpack true \
 *         --es result /sdcard/Android/data/org.egoedge.demo/files/egoedge/result.json
 */
class BenchmarkActivity : Activity() {

    /** The protocol's parameters, read from the intent extras. */
    private class Request(
        val model: File,
        val iterations: Int,
        val warmup: Int,
        val threads: Int,
        val xnnpack: Boolean,
        val inputs: File?,
        val inputShape: LongArray?,
        val result: File,
    )

    override fun onCreate(savedInstanceState: Bundle?) {
        super.onCreate(savedInstanceState)
        // Only the shell may start this activity (AndroidManifest: android.permission.DUMP), and even
        // then it reads models and inputs only from the push folder or the app's own models, and
        // writes its result only into the push folder: an intent cannot point it anywhere else.
        val resultFile = intent.getStringExtra(EXTRA_RESULT)?.let { SafePaths.resolveInside(it, listOf(pushFolder())) }
        if (resultFile == null) {
            Log.e(TAG, "no '$EXTRA_RESULT' extra inside ${pushFolder()}: nowhere to write the result")
            finish()
            return
        }
        thread(name = "egoedge-benchmark") {
            val result = try {
                measure(request(resultFile))
            } catch (e: Throwable) { // a result file is the only way egoedge learns what went wrong
                Log.e(TAG, "benchmark failed", e)
                BenchResult.error("${e::class.java.simpleName}: ${e.message}")
            }
            write(resultFile, Json.write(result))
            runOnUiThread { finish() }
        }
    }

    private fun request(result: File): Request {
        val model = intent.getStringExtra(EXTRA_MODEL) ?: throw IllegalArgumentException("missing extra '$EXTRA_MODEL'")
        val iterations = intent.getIntExtra(EXTRA_ITERATIONS, 20)
        val warmup = intent.getIntExtra(EXTRA_WARMUP, 3)
        require(iterations >= 1 && warmup >= 0) { "iterations must be >= 1 and warmup >= 0" }
        val readable = listOf(pushFolder(), File(filesDir, "models"))
        val inputs = intent.getStringExtra(EXTRA_INPUTS)?.let { SafePaths.require(it, listOf(pushFolder()), "inputs") }
        val shape = intent.getStringExtra(EXTRA_INPUT_SHAPE)?.let(Inputs::parseShape)
        require((inputs == null) == (shape == null)) { "'$EXTRA_INPUTS' and '$EXTRA_INPUT_SHAPE' come together" }
        return Request(
            SafePaths.require(model, readable, "model"), iterations, warmup,
            threads = intent.getIntExtra(EXTRA_THREADS, Runtime.getRuntime().availableProcessors()),
            xnnpack = intent.getBooleanExtra(EXTRA_XNNPACK, true),
            inputs = inputs, inputShape = shape, result = result,
        )
    }

    private fun measure(r: Request): Map<String, Any?> {
        require(r.model.isFile) { "cannot open ${r.model}" }
        val clips = r.inputs?.let { Inputs.clips(it.readBytes(), r.inputShape!!) }
        val clipShape = r.inputShape?.let { longArrayOf(1) + it.copyOfRange(1, it.size) }
            ?: ModelManifest.load(this)?.artifacts?.firstOrNull { it.file.endsWith("/${r.model.name}") }?.input?.shape
        val t0 = SystemClock.elapsedRealtimeNanos()
        Runners.open(r.model, RunnerOptions(r.threads, r.xnnpack), clipShape).use { runner ->
            val loadMs = (SystemClock.elapsedRealtimeNanos() - t0) / 1e6
            val once = { clips?.first()?.let(runner::run) ?: runner.runWithoutData() }
            repeat(r.warmup) { once() }
            val samples = DoubleArray(r.iterations) {
                val start = SystemClock.elapsedRealtimeNanos()
                once()
                (SystemClock.elapsedRealtimeNanos() - start) / 1e6
            }
            val logits = clips?.map(runner::run)
            return BenchResult.ok(
                name = r.model.nameWithoutExtension,
                format = BenchResult.formatOf(r.model.name)!!,
                precision = BenchResult.precisionOf(r.model.name),
                device = "${Build.MANUFACTURER} ${Build.MODEL} (Android ${Build.VERSION.RELEASE}, ${Build.SUPPORTED_ABIS.first()})",
                runtime = runner.runtime,
                threads = r.threads,
                sizeBytes = r.model.length(),
                loadMs = loadMs,
                samplesMs = samples,
                warmup = r.warmup,
                peakRssMb = peakRssMb(),
                logits = logits,
            )
        }
    }

    private fun write(target: File, text: String) {
        try {
            target.parentFile?.mkdirs()
            val tmp = File(target.path + ".tmp")
            tmp.writeText(text)
            check(tmp.renameTo(target)) { "cannot rename $tmp to $target" }
        } catch (e: Exception) {
            Log.e(TAG, "cannot write the result to $target", e)
        }
    }

    /** Where `egoedge bench` pushes models and inputs and reads the result (bench/device_runners/android.py APP_DIR). */
    private fun pushFolder(): File = File(getExternalFilesDir(null), PUSH_FOLDER)

    companion object {
        private const val TAG = "egoedge-bench"
        const val PUSH_FOLDER = "egoedge"
        const val EXTRA_MODEL = "model"
        const val EXTRA_ITERATIONS = "iterations"
        const val EXTRA_WARMUP = "warmup"
        const val EXTRA_THREADS = "threads"
        const val EXTRA_XNNPACK = "xnnpack"
        const val EXTRA_INPUTS = "inputs"
        const val EXTRA_INPUT_SHAPE = "input_shape"
        const val EXTRA_RESULT = "result"
    }
}
