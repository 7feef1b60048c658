package org.egoedge.demo

import android.Manifest
import android.content.pm.PackageManager
import android.graphics.Bitmap
import android.graphics.Matrix
import android.os.Bundle
import android.os.SystemClock
import android.util.Size
import android.view.View
import android.widget.AdapterView
import android.widget.ArrayAdapter
import androidx.activity.result.contract.ActivityResultContracts
import androidx.appcompat.app.AppCompatActivity
import androidx.camera.core.CameraSelector
import androidx.camera.core.ImageAnalysis
import androidx.camera.core.ImageProxy
import androidx.camera.core.Preview
import androidx.camera.core.resolutionselector.ResolutionSelector
import androidx.camera.core.resolutionselector.ResolutionStrategy
import androidx.camera.lifecycle.ProcessCameraProvider
import androidx.core.content.ContextCompat
import androidx.lifecycle.Lifecycle
import org.egoedge.demo.core.ClipBuffer
import org.egoedge.demo.core.Frame
import org.egoedge.demo.core.FrameClassifier
import org.egoedge.demo.core.LatencyStats
import org.egoedge.demo.core.Preprocess
import org.egoedge.demo.core.StepClassifier
import org.egoedge.demo.core.StreamLayout
import org.egoedge.demo.core.StreamingClassifier
import org.egoedge.demo.core.TopK
import org.egoedge.demo.databinding.ActivityMainBinding
import org.egoedge.demo.runtime.ModelRunner
import org.egoedge.demo.runtime.RunnerOptions
import java.util.concurrent.ExecutorService
import java.util.concurrent.Executors
import java.util.concurrent.RejectedExecutionException
import java.util.concurrent.TimeUnit
import java.util.concurrent.atomic.AtomicBoolean

/**
 * Pick an embedded model (format x precision), run it on the bundled sample clip or on the camera,
 * and see the top-5 labels with their latency. The models and everything about their inputs come
 * from `assets/manifest.json`, written by `egoedge embed`.
 *
 * A streaming model runs the camera frame by frame: a fused step is one call per frame taken, the
 * window of embeddings carried in and out as its own tensors; a pair (frame encoder + temporal head)
 * puts each frame's embedding into the app's ring buffer and runs the head over it. A clip model
 * instead reruns every frame of the window on each step.
 */
class MainActivity : AppCompatActivity() {
    private lateinit var binding: ActivityMainBinding
    private var manifest: ModelManifest? = null
    private var sample: SampleClip? = null

    // One thread owns every runner, in the whole process: runtimes are not thread-safe, ExecuTorch's
    // thread pool is process-wide, and an activity recreated on rotation must not open its model while
    // the old instance is still closing its own. The UI never waits on a model.
    private val inference: ExecutorService = InferenceThread.executor
    private val analysis: ExecutorService = Executors.newSingleThreadExecutor()

    /** Set on the UI thread in [onDestroy] before the runners' close is queued: later work is dropped. */
    @Volatile private var destroyed = false
    private var runner: ModelRunner? = null
    private var runnerKey: Pair<String, Int>? = null
    private var headRunner: ModelRunner? = null
    private var stream: FrameClassifier? = null
    private val latencies = ArrayDeque<Double>()

    /** The chosen artifact and thread count, written on the UI thread, read by the worker threads. */
    @Volatile private var choice: Pair<Artifact, Int>? = null

    private var cameraProvider: ProcessCameraProvider? = null
    @Volatile private var clipBuffer: ClipBuffer? = null
    private val busy = AtomicBoolean(false)

    private val askCamera = registerForActivityResult(ActivityResultContracts.RequestPermission()) { granted ->
        if (granted) startCamera() else binding.status.setText(R.string.camera_denied)
    }

    override fun onCreate(savedInstanceState: Bundle?) {
        super.onCreate(savedInstanceState)
        binding = ActivityMainBinding.inflate(layoutInflater)
        setContentView(binding.root)

        val loaded = try {
            ModelManifest.load(this)
        } catch (e: Exception) {
            binding.status.text = getString(R.string.bad_manifest, e.message)
            null
        }
        if (loaded == null || loaded.choices.isEmpty()) {
            if (binding.status.text.isNullOrEmpty()) binding.status.setText(R.string.no_models)
            binding.runSample.isEnabled = false
            binding.camera.isEnabled = false
            return
        }
        manifest = loaded
        sample = try {
            loaded.sampleClip(this)
        } catch (e: Exception) { // the models still run on the camera
            binding.results.text = getString(R.string.bad_sample, e.message)
            null
        }
        binding.runSample.isEnabled = sample != null

        binding.model.adapter = ArrayAdapter(this, android.R.layout.simple_spinner_dropdown_item,
            loaded.choices.map { it.title })
        val cores = Runtime.getRuntime().availableProcessors()
        val threadChoices = listOf(1, 2, 4, cores).filter { it <= cores }.distinct().sorted()
        binding.threads.adapter = ArrayAdapter(this, android.R.layout.simple_spinner_dropdown_item,
            threadChoices.map { resources.getQuantityString(R.plurals.threads, it, it) })
        binding.threads.setSelection(threadChoices.indexOf(minOf(4, cores)).coerceAtLeast(0))
        choice = loaded.choices.first() to threads()
        val reset = object : AdapterView.OnItemSelectedListener {
            override fun onItemSelected(parent: AdapterView<*>?, view: View?, position: Int, id: Long) {
                val a = loaded.choices[binding.model.selectedItemPosition]
                choice = a to threads()
                // A model with another clip length needs another buffer; the camera keeps running.
                clipBuffer = clipBuffer?.let { ClipBuffer(a.preprocess.frames, FRAME_INTERVAL_MS) }
                binding.status.text = describe(a)
            }

            override fun onNothingSelected(parent: AdapterView<*>?) = Unit
        }
        binding.model.onItemSelectedListener = reset
        binding.threads.onItemSelectedListener = reset
        binding.runSample.setOnClickListener { runSample() }
        binding.camera.setOnClickListener { if (cameraProvider == null) startCameraWithPermission() else stopCamera() }
    }

    override fun onDestroy() {
        // Stop the frames first, then drain the analysis thread; mark this instance destroyed before
        // queueing the close, so that a clip queued after it (its check raced the flag) finds the flag
        // set when it runs and never touches a closed runner. The inference thread is the process's:
        // it is never shut down, so no execute() can be rejected.
        stopCamera()
        analysis.shutdown()
        analysis.awaitTermination(ANALYSIS_DRAIN_MS, TimeUnit.MILLISECONDS)
        destroyed = true
        submit {
            runner?.close()
            headRunner?.close()
            runner = null
            headRunner = null
        }
        super.onDestroy()
    }

    /** Work for the inference thread; dropped (and `busy` released) if this activity is gone by then. */
    private fun submit(work: () -> Unit): Boolean = try {
        inference.execute(Runnable(work))
        true
    } catch (e: RejectedExecutionException) {
        false
    }

    private fun threads(): Int = binding.threads.selectedItem.toString().takeWhile { it.isDigit() }.toInt()

    private fun describe(a: Artifact): String = getString(
        R.string.model_info, a.format, a.precision, a.input.shape.joinToString("×"), a.input.dtype,
        a.parityMaxAbs ?: Double.NaN,
    )

    /** The runner for the current choice, opened (or reopened) on the inference thread, which alone touches it. */
    private fun runnerFor(a: Artifact, threads: Int): ModelRunner {
        val key = a.name to threads
        if (runnerKey != key) {
            runner?.close()
            headRunner?.close()
            headRunner = null
            stream = null
            runner = Runners.open(manifest!!.localFile(this, a), a.format, RunnerOptions(threads), a.input.shape)
            runnerKey = key
            latencies.clear()
        }
        return runner!!
    }

    /**
     * A fused step with the window it carries, or the streaming pair of a frame encoder with its ring buffer;
     * on the inference thread, like [runnerFor].
     */
    private fun streamFor(encoder: Artifact, threads: Int): FrameClassifier {
        val m = manifest!!
        val enc = runnerFor(encoder, threads)
        stream?.let { return it }
        if (encoder.isStep) return stepOf(enc, encoder).also { stream = it }
        val head = m.headOf(encoder) ?: error("${encoder.name}: its temporal head is not embedded")
        val spec = m.streaming ?: error("the manifest has no streaming block")
        val layout = m.layoutOf(head)
        val h = Runners.open(m.localFile(this, head), head.format,
            RunnerOptions(Runners.headThreads(head.format, threads, spec.headThreads)), null)
        headRunner = h
        return pairOf(enc, h, layout, spec).also { stream = it }
    }

    /** A streaming classifier over the opened pair with its own ring buffer, the head fed by input name. */
    private fun pairOf(enc: ModelRunner, h: ModelRunner, layout: StreamLayout, spec: StreamingSpec): StreamingClassifier {
        val shapes = layout.arrange(longArrayOf(1, spec.window.toLong(), spec.embeddingDim.toLong()), longArrayOf(1, spec.window.toLong()))
        return StreamingClassifier(enc::run, { w, v -> h.runInputs(layout.arrange(w, v), shapes) }, spec.window, spec.embeddingDim)
    }

    /** A streaming classifier over the opened step with its own window, fed and read by the manifest's tensor names. */
    private fun stepOf(r: ModelRunner, step: Artifact): StepClassifier {
        val spec = manifest!!.streaming ?: error("the manifest has no streaming block")
        return StepClassifier({ inputs -> r.runAll(inputs, step.inputShapes) }, manifest!!.stepLayoutOf(step),
                              spec.window, spec.embeddingDim)
    }

    /** One camera frame through the streaming model (one step call, or encoder then head), labels once the window is full. */
    private fun classifyFrame(frame: Frame, takenMs: Long) {
        val current = choice
        if (current == null || destroyed) { // nothing chosen, or the activity is going away
            busy.set(false)
            return
        }
        val (a, threads) = current
        val queued = submit {
            if (destroyed) {
                busy.set(false)
                return@submit
            }
            val text = try {
                val pair = streamFor(a, threads)
                val input = Preprocess.frame(frame, a.preprocess)
                val start = SystemClock.elapsedRealtimeNanos()
                val logits = pair.stepAt(input, takenMs, FRAME_INTERVAL_MS)
                val ms = (SystemClock.elapsedRealtimeNanos() - start) / 1e6
                if (pair.isFull) {
                    latencies.addLast(ms)
                    if (latencies.size > 30) latencies.removeFirst()
                    report(a, logits, ms, null, null)
                } else {
                    getString(R.string.filling_window, pair.count, pair.window)
                }
            } catch (e: Exception) {
                getString(R.string.run_failed, a.name, e.message)
            } finally {
                busy.set(false)
            }
            runOnUiThread { if (!destroyed) binding.results.text = text }
        }
        if (!queued) busy.set(false)
    }

    private fun classify(frames: List<Frame>, reference: FloatArray?, label: String?) {
        val current = choice
        if (current == null || destroyed) { // nothing chosen, or the activity is going away: drop the clip
            busy.set(false)
            return
        }
        val (a, threads) = current
        val queued = submit {
            if (destroyed) {
                busy.set(false)
                return@submit
            }
            val text = try {
                val clip = Preprocess.clip(frames, a.preprocess)
                // A streaming model plays the clip frame by frame from an empty window of its own (the
                // camera's window is left as it was): the sample's parity line then checks the step
                // or the pair against the clip model's logits.
                val run: (FloatArray) -> FloatArray
                if (a.streams) {
                    streamFor(a, threads) // opens the step or pair; the camera's classifier keeps its own window
                    val m = manifest!!
                    val own = if (a.isStep) stepOf(runner!!, a)
                              else pairOf(runner!!, headRunner!!, m.layoutOf(m.headOf(a)!!), m.streaming!!)
                    run = { x -> own.clip(x, frames.size) }
                } else {
                    run = runnerFor(a, threads)::run
                }
                val start = SystemClock.elapsedRealtimeNanos()
                val logits = run(clip)
                val ms = (SystemClock.elapsedRealtimeNanos() - start) / 1e6
                latencies.addLast(ms)
                if (latencies.size > 30) latencies.removeFirst()
                report(a, logits, ms, reference, label)
            } catch (e: Exception) {
                getString(R.string.run_failed, a.name, e.message)
            } finally {
                busy.set(false)
            }
            runOnUiThread { if (!destroyed) binding.results.text = text }
        }
        if (!queued) busy.set(false)
    }

    private fun report(a: Artifact, logits: FloatArray, ms: Double, reference: FloatArray?, label: String?): String {
        val median = LatencyStats.of(latencies.toDoubleArray(), 0).median
        val lines = mutableListOf(getString(R.string.latency, ms, median, latencies.size))
        if (label != null) lines += getString(R.string.true_label, label)
        if (reference != null) lines += getString(R.string.parity, TopK.maxAbsDiff(logits, reference))
        lines += ""
        TopK.of(logits, a.labels).forEachIndexed { i, r ->
            lines += "%d. %-18s %5.1f%%".format(i + 1, r.label, 100 * r.probability)
        }
        return lines.joinToString("\n")
    }

    private fun runSample() {
        val s = sample ?: return
        classify(s.frames, s.referenceLogits, s.label)
    }

    // --- camera ----------------------------------------------------------------------------------

    private fun startCameraWithPermission() {
        if (ContextCompat.checkSelfPermission(this, Manifest.permission.CAMERA) == PackageManager.PERMISSION_GRANTED) {
            startCamera()
        } else {
            askCamera.launch(Manifest.permission.CAMERA)
        }
    }

    private fun startCamera() {
        val a = choice?.first ?: return
        clipBuffer = ClipBuffer(a.preprocess.frames, FRAME_INTERVAL_MS)
        val future = ProcessCameraProvider.getInstance(this)
        future.addListener({
            // The provider can arrive after this activity was destroyed (rotation, back): binding a
            // destroyed lifecycle throws. Nothing to start then.
            if (destroyed || isDestroyed || lifecycle.currentState == Lifecycle.State.DESTROYED) return@addListener
            val provider = try {
                future.get()
            } catch (e: Exception) {
                binding.status.text = getString(R.string.run_failed, "camera", e.message)
                return@addListener
            }
            val preview = Preview.Builder().build().also { it.setSurfaceProvider(binding.preview.surfaceProvider) }
            // Small analysis frames: the model sees a few hundred pixels, converting more is wasted.
            val selector = ResolutionSelector.Builder().setResolutionStrategy(
                ResolutionStrategy(Size(320, 240), ResolutionStrategy.FALLBACK_RULE_CLOSEST_HIGHER_THEN_LOWER),
            ).build()
            val imageAnalysis = ImageAnalysis.Builder()
                .setResolutionSelector(selector)
                .setBackpressureStrategy(ImageAnalysis.STRATEGY_KEEP_ONLY_LATEST)
                .setOutputImageFormat(ImageAnalysis.OUTPUT_IMAGE_FORMAT_RGBA_8888)
                .build()
            imageAnalysis.setAnalyzer(analysis, ::analyze)
            provider.unbindAll()
            provider.bindToLifecycle(this, CameraSelector.DEFAULT_BACK_CAMERA, preview, imageAnalysis)
            cameraProvider = provider
            binding.preview.visibility = View.VISIBLE
            binding.camera.setText(R.string.stop_camera)
        }, ContextCompat.getMainExecutor(this))
    }

    private fun stopCamera() {
        cameraProvider?.unbindAll()
        cameraProvider = null
        clipBuffer = null
        binding.preview.visibility = View.GONE
        binding.camera.setText(R.string.camera)
    }

    /** CameraX's analyzer: nothing it throws may escape (it would kill the app from the analysis thread). */
    private fun analyze(image: ImageProxy) {
        try {
            analyzeFrame(image)
        } catch (e: Exception) {
            busy.set(false)
            runOnUiThread { if (!destroyed) binding.results.text = getString(R.string.run_failed, "camera frame", e.message) }
        }
    }

    private fun analyzeFrame(image: ImageProxy) {
        var taken: Frame? = null
        // The frame's own capture time: frames dropped before they reach here still count as time passing.
        val now = image.imageInfo.timestamp / 1_000_000
        image.use {
            val buffer = clipBuffer ?: return
            if (!buffer.wants(now)) return
            taken = toFrame(it.toBitmap(), it.imageInfo.rotationDegrees)
            buffer.offer(taken!!, now)
        }
        val buffer = clipBuffer ?: return
        if (choice?.first?.streams == true) {
            // Each frame taken is encoded once; a frame that arrives while the last is still running is
            // dropped, and its slot in the window holds the last embedding (FrameClassifier.stepAt).
            if (busy.compareAndSet(false, true)) classifyFrame(taken!!, now)
        } else if (buffer.isFull && busy.compareAndSet(false, true)) {
            classify(buffer.snapshot(), null, null)
        }
    }

    private fun toFrame(bitmap: Bitmap, rotation: Int): Frame {
        val upright = if (rotation == 0) bitmap else
            Bitmap.createBitmap(bitmap, 0, 0, bitmap.width, bitmap.height, Matrix().apply { postRotate(rotation.toFloat()) }, false)
        val pixels = IntArray(upright.width * upright.height)
        upright.getPixels(pixels, 0, upright.width, 0, 0, upright.width, upright.height)
        return Frame.fromArgb(pixels, upright.width, upright.height)
    }

    private companion object {
        /** One camera frame per 125 ms into the clip: 8 frames span about a second, like a training clip. */
        const val FRAME_INTERVAL_MS = 125L

        /** How long onDestroy waits for a frame being analysed to finish (well under Android's ANR limit). */
        const val ANALYSIS_DRAIN_MS = 500L
    }
}
