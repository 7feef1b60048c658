package org.egoedge.demo

import android.app.Activity
import android.os.Build
import android.os.Bundle
import android.os.SystemClock
import android.util.Log
import org.egoedge.demo.core.BenchResult
import org.egoedge.demo.core.FrameClassifier
import org.egoedge.demo.core.Inputs
import org.egoedge.demo.core.Json
import org.egoedge.demo.core.SafePaths
import org.egoedge.demo.core.StepClassifier
import org.egoedge.demo.core.StepLayout
import org.egoedge.demo.core.StreamLayout
import org.egoedge.demo.core.StreamingClassifier
import org.egoedge.demo.runtime.ModelRunner
import org.egoedge.demo.runtime.RunnerOptions
import java.io.File
import java.util.concurrent.atomic.AtomicBoolean
import kotlin.concurrent.thread

/**
 * The benchmark protocol (egoedge `bench/devices/on_device/app_protocol.py`, version 1): started with intent extras,
 * it loads one model, warms up, times `iterations` runs, optionally runs the given clips for
 * accuracy, writes the result JSON (temp file, then rename) and finishes. `egoedge bench --device
 * android` drives it; by hand:
 *
 *     adb shell am start -W -S -n org.egoedge.demo/org.egoedge.demo.BenchmarkActivity \
 *         --es model /sdcard/Android/data/org.egoedge.demo/files/egoedge/student_tflite_int8.tflite \
 *         --ei iterations 50 --ei warmup 5 --ei threads 4 --ez xnnpack true \
 *         --es result /sdcard/Android/data/org.egoedge.demo/files/egoedge/result.json
 *
 * Streaming mode, `window` and `embedding_dim` sizing the window and `frame_shape` one frame (`1,3,H,W`):
 * for a streaming pair `model` is its frame encoder and `head` names the temporal head; for a fused
 * step `model` is the step and `step_inputs` / `step_outputs` give its tensors' roles in its own order
 * (`frame,buffer,valid` and `logits,next_buffer,next_valid` in some order). Each timed run is one new
 * frame on a full window; each input clip is played frame by frame from an empty window and its
 * logits are the last step's.
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
        val stream: Stream?,
    )

    /** Streaming mode's parameters: the temporal head (a pair) or the step's tensor roles, and the window's shapes. */
    private class Stream(
        val head: File?, val step: StepLayout?, val window: Int, val dim: Int, val frameShape: LongArray, val headThreads: Int,
    )

    override fun onCreate(savedInstanceState: Bundle?) {
        super.onCreate(savedInstanceState)
        // A configuration change the manifest does not absorb recreates the activity with the same
        // intent: the benchmark already running must not be started again beside itself.
        if (savedInstanceState != null || !running.compareAndSet(false, true)) {
            Log.w(TAG, "a benchmark is already running; this instance does nothing")
            finish()
            return
        }
        // Only a caller holding android.permission.DUMP may start this activity (AndroidManifest): adb's
        // shell holds it; an app holds it only if someone with adb access grants it (`pm grant`, it is a
        // development permission), never by install. Even then it reads models and inputs only from the
        // push folder or the app's own models, and writes its result only into the push folder: an
        // intent cannot point it anywhere else.
        val resultFile = intent.getStringExtra(EXTRA_RESULT)?.let { SafePaths.resolveInside(it, listOf(pushFolder())) }
        if (resultFile == null) {
            Log.e(TAG, "no '$EXTRA_RESULT' extra inside ${pushFolder()}: nowhere to write the result")
            running.set(false)
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
            running.set(false)
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
        val head = intent.getStringExtra(EXTRA_HEAD)
        val stepInputs = intent.getStringExtra(EXTRA_STEP_INPUTS)
        require(head == null || stepInputs == null) { "'$EXTRA_HEAD' (a pair) and '$EXTRA_STEP_INPUTS' (a step) exclude each other" }
        val stream = if (head == null && stepInputs == null) null else {
            val window = intent.getIntExtra(EXTRA_WINDOW, 0)
            val dim = intent.getIntExtra(EXTRA_EMBEDDING_DIM, 0)
            val frame = intent.getStringExtra(EXTRA_FRAME_SHAPE)?.let(Inputs::parseShape)
                ?: throw IllegalArgumentException("streaming mode needs '$EXTRA_FRAME_SHAPE'")
            require(window > 0 && dim > 0) { "streaming mode needs '$EXTRA_WINDOW' and '$EXTRA_EMBEDDING_DIM' > 0" }
            val step = stepInputs?.let {
                val outputs = intent.getStringExtra(EXTRA_STEP_OUTPUTS)
                    ?: throw IllegalArgumentException("'$EXTRA_STEP_INPUTS' needs '$EXTRA_STEP_OUTPUTS'")
                StepLayout.of(it.split(','), outputs.split(','), "frame", "buffer", "valid", "next_buffer", "next_valid",
                              StreamLayout.OLDEST_FIRST)
            }
            Stream(head?.let { SafePaths.require(it, readable, "head") }, step, window, dim, frame,
                   intent.getIntExtra(EXTRA_HEAD_THREADS, 1))
        }
        return Request(
            SafePaths.require(model, readable, "model"), iterations, warmup,
            threads = intent.getIntExtra(EXTRA_THREADS, Runtime.getRuntime().availableProcessors()),
            xnnpack = intent.getBooleanExtra(EXTRA_XNNPACK, true),
            inputs = inputs, inputShape = shape, result = result, stream = stream,
        )
    }

    private fun measure(r: Request): Map<String, Any?> {
        require(r.model.isFile) { "cannot open ${r.model}" }
        if (r.stream != null) return measureStream(r, r.stream)
        val clips = r.inputs?.let { Inputs.clips(it.readBytes(), r.inputShape!!) }
        val clipShape = r.inputShape?.let { longArrayOf(1) + it.copyOfRange(1, it.size) }
            ?: ModelManifest.load(this)?.artifacts?.firstOrNull { it.file.endsWith("/${r.model.name}") }?.input?.shape
        val t0 = SystemClock.elapsedRealtimeNanos()
        Runners.open(r.model, RunnerOptions(r.threads, r.xnnpack), clipShape).use { runner ->
            val loadMs = (SystemClock.elapsedRealtimeNanos() - t0) / 1e6
            val once = { clips?.first()?.let(runner::run) ?: runner.runWithoutData() }
            repeat(r.warmup) { once() }
            val samples = timed(r.iterations) { once() }
            val logits = clips?.map(runner::run)
            return result(r, runner.runtime, r.model.length(), loadMs, samples, logits)
        }
    }

    /** `iterations` runs of `run`, each timed in milliseconds. */
    private fun timed(iterations: Int, run: () -> Unit): DoubleArray = DoubleArray(iterations) {
        val start = SystemClock.elapsedRealtimeNanos()
        run()
        (SystemClock.elapsedRealtimeNanos() - start) / 1e6
    }

    /** The protocol's ok result for the request's model, measured on this phone. */
    private fun result(
        r: Request,
        runtime: String,
        sizeBytes: Long,
        loadMs: Double,
        samples: DoubleArray,
        logits: List<FloatArray>?,
        streaming: Map<String, Any?>? = null,
    ): Map<String, Any?> = BenchResult.ok(
        name = r.model.nameWithoutExtension,
        format = BenchResult.formatOf(r.model.name)!!,
        precision = BenchResult.precisionOf(r.model.name),
        device = "${Build.MANUFACTURER} ${Build.MODEL} (Android ${Build.VERSION.RELEASE}, ${Build.SUPPORTED_ABIS.first()})",
        runtime = runtime,
        threads = r.threads,
        sizeBytes = sizeBytes,
        loadMs = loadMs,
        samplesMs = samples,
        warmup = r.warmup,
        peakRssMb = peakRssMb(),
        logits = logits,
        streaming = streaming,
    )

    private fun measureStream(r: Request, s: Stream): Map<String, Any?> {
        s.head?.let { require(it.isFile) { "cannot open $it" } }
        val t0 = SystemClock.elapsedRealtimeNanos()
        // A pair's encoder runs one frame of the given shape; a step is fed every input with its shape.
        Runners.open(r.model, RunnerOptions(r.threads, r.xnnpack), if (s.step == null) s.frameShape else null).use { first ->
            val step = s.step
            if (step != null) {
                val window = longArrayOf(1, s.window.toLong(), s.dim.toLong())
                val shapes = step.arrange(s.frameShape, window, longArrayOf(1, s.window.toLong()))
                val stream = StepClassifier({ first.runAll(it, shapes) }, step, s.window, s.dim)
                return timeStream(r, s, stream, first, r.model.length(), t0, mapOf("window" to s.window, "form" to "step"))
            }
            val headFile = s.head!!
            val headOptions = RunnerOptions(Runners.headThreads(BenchResult.formatOf(headFile.name) ?: "", r.threads, s.headThreads), r.xnnpack)
            Runners.open(headFile, headOptions, null).use { head ->
                val headShapes = listOf(longArrayOf(1, s.window.toLong(), s.dim.toLong()), longArrayOf(1, s.window.toLong()))
                val stream = StreamingClassifier(first::run, { w, v -> head.runInputs(listOf(w, v), headShapes) }, s.window, s.dim)
                return timeStream(r, s, stream, first, r.model.length() + headFile.length(), t0,
                                  mapOf("window" to s.window, "head" to headFile.name))
            }
        }
    }

    /** Either streaming form, opened: timed one new frame at a time on a full window, then the clips played through. */
    private fun timeStream(
        r: Request, s: Stream, stream: FrameClassifier, runner: ModelRunner, bytes: Long, t0: Long, fields: Map<String, Any?>,
    ): Map<String, Any?> {
        val loadMs = (SystemClock.elapsedRealtimeNanos() - t0) / 1e6
        val clips = r.inputs?.let { Inputs.clips(it.readBytes(), r.inputShape!!) }
        val frameSize = s.frameShape.fold(1L) { a, b -> a * b }.toInt()
        val frame = clips?.first()?.copyOfRange(0, frameSize) ?: FloatArray(frameSize)
        repeat(s.window - 1 + r.warmup) { stream.step(frame) } // timed runs start on a full window
        val samples = timed(r.iterations) { stream.step(frame) }
        val frames = r.inputShape?.get(1)?.toInt() ?: s.window
        val logits = clips?.map { stream.clip(it, frames) }
        return result(r, runner.runtime, bytes, loadMs, samples, logits, fields)
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

    /** Where `egoedge bench` pushes models and inputs and reads the result (bench/devices/on_device/android.py APP_DIR). */
    private fun pushFolder(): File = File(getExternalFilesDir(null), PUSH_FOLDER)

    companion object {
        private const val TAG = "egoedge-bench"

        /** One benchmark at a time in this process, whatever happens to the activity instance that started it. */
        private val running = AtomicBoolean(false)
        const val PUSH_FOLDER = "egoedge"
        const val EXTRA_MODEL = "model"
        const val EXTRA_ITERATIONS = "iterations"
        const val EXTRA_WARMUP = "warmup"
        const val EXTRA_THREADS = "threads"
        const val EXTRA_XNNPACK = "xnnpack"
        const val EXTRA_INPUTS = "inputs"
        const val EXTRA_INPUT_SHAPE = "input_shape"
        const val EXTRA_RESULT = "result"
        const val EXTRA_HEAD = "head"
        const val EXTRA_WINDOW = "window"
        const val EXTRA_EMBEDDING_DIM = "embedding_dim"
        const val EXTRA_FRAME_SHAPE = "frame_shape"
        const val EXTRA_HEAD_THREADS = "head_threads"
        const val EXTRA_STEP_INPUTS = "step_inputs"
        const val EXTRA_STEP_OUTPUTS = "step_outputs"
    }
}
