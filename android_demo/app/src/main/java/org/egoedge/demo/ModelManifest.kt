package org.egoedge.demo

import android.content.Context
import org.egoedge.demo.core.Frame
import org.egoedge.demo.core.PreprocessSpec
import org.egoedge.demo.core.QuantParams
import org.egoedge.demo.core.StepLayout
import org.egoedge.demo.core.StreamLayout
import org.json.JSONArray
import org.json.JSONObject
import java.io.File
import java.io.FileNotFoundException

/** One input or output tensor of an artifact, as the manifest describes it. */
data class TensorSpec(val name: String, val shape: LongArray, val dtype: String, val quant: QuantParams?)

/** One embedded artifact: what `egoedge embed` copied into `assets/models/` and verified. */
data class Artifact(
    val name: String,
    val file: String,
    val sha256: String,
    val bytes: Long,
    val format: String,
    val precision: String,
    val input: TensorSpec,
    val output: TensorSpec,
    val preprocess: PreprocessSpec,
    val labels: List<String>,
    val top1: Double?,
    val parityMaxAbs: Double?,
    /**
     * `clip` (the whole clip in one call), `stream_step` (one call per frame, the window carried in and out),
     * or `frame_encoder` / `temporal_head`: the halves of a streaming pair.
     */
    val role: String = "clip",
    /** A streaming artifact's other half, by name. */
    val pair: String? = null,
    /** Every input's name, in the order the model takes them. */
    val inputNames: List<String> = listOf(input.name),
    /** Every output's name, in the order the model gives them. */
    val outputNames: List<String> = listOf(output.name),
    /** Every input's shape, in the order the model takes them. */
    val inputShapes: List<LongArray> = listOf(input.shape),
) {
    /** Runs the camera frame by frame: a fused step, or a pair (picked by its frame encoder). */
    val streams: Boolean get() = role == "frame_encoder" || isStep
    val isStep: Boolean get() = role == ModelManifest.STEP
    val title: String get() = (if (streams) "$name (streaming) · " else "$name · ") + "%.2f MB".format(bytes / 1e6) +
        (top1?.let { " · top-1 %.1f%%".format(it) } ?: "")
}

/**
 * The manifest's `streaming` block: how the camera path feeds a streaming pair's temporal head or a fused
 * step. Manifests written before the block named the tensors had these defaults, oldest slot first.
 */
data class StreamingSpec(
    val window: Int,
    val embeddingDim: Int,
    val headThreads: Int = 1,
    val bufferInput: String = "embeddings",
    val validInput: String = "valid",
    val order: String = StreamLayout.OLDEST_FIRST,
    val frameInput: String = "frame",
    val nextBufferOutput: String = "next_embeddings",
    val nextValidOutput: String = "next_valid",
)

/** The held-out clip embedded with the models, with PyTorch's logits for it. */
data class SampleClip(val frames: List<Frame>, val label: String, val referenceLogits: FloatArray)

/**
 * `assets/manifest.json` (schema: `edge/schemas/manifest.schema.json` in the egoedge repo).
 *
 * Everything about a model the app needs -- input shape, preprocessing, int8 parameters, labels --
 * comes from here; nothing is hard-coded.
 */
class ModelManifest(
    val artifacts: List<Artifact>,
    private val sample: JSONObject?,
    val streaming: StreamingSpec? = null,
) {
    /** What the model picker offers: clip artifacts, fused steps, and each streaming pair once (by its frame encoder). */
    val choices: List<Artifact>
        get() = artifacts.filter {
            it.role == "clip" || (it.streams && streaming != null && (it.isStep || headOf(it) != null))
        }

    /** The temporal head of a streaming pair's frame encoder. */
    fun headOf(encoder: Artifact): Artifact? = artifacts.firstOrNull { it.role == "temporal_head" && it.name == encoder.pair }

    /** Which of the head's inputs takes the window and which the mask, from the streaming block. */
    fun layoutOf(head: Artifact): StreamLayout {
        val spec = streaming ?: error("the manifest has no streaming block")
        return StreamLayout.of(head.inputNames, spec.bufferInput, spec.validInput, spec.order)
    }

    /** Which of a fused step's inputs and outputs is the frame, the window, the mask and the logits. */
    fun stepLayoutOf(step: Artifact): StepLayout {
        val spec = streaming ?: error("the manifest has no streaming block")
        return StepLayout.of(step.inputNames, step.outputNames, spec.frameInput, spec.bufferInput, spec.validInput,
                             spec.nextBufferOutput, spec.nextValidOutput, spec.order)
    }

    /** Decodes the sample clip from the assets (raw uint8 T x H x W x 3). */
    fun sampleClip(context: Context): SampleClip? {
        val s = sample ?: return null
        val shape = s.getJSONArray("shape").toLongs()
        val bytes = context.assets.open(s.getString("clip")).use { it.readBytes() }
        val frames = Frame.splitClip(bytes, shape[0].toInt(), shape[1].toInt(), shape[2].toInt())
        return SampleClip(frames, s.getString("label"), s.getJSONArray("reference_logits").toFloats())
    }

    /** The artifact's file in app storage: runtimes need a real path (ExecuTorch) or a mappable file. */
    fun localFile(context: Context, artifact: Artifact): File {
        val target = File(context.filesDir, "models/${artifact.sha256.take(16)}-${artifact.file.substringAfterLast('/')}")
        if (!target.isFile || target.length() != artifact.bytes) {
            target.parentFile?.mkdirs()
            val partial = File(target.path + ".part")
            context.assets.open(artifact.file).use { input -> partial.outputStream().use { input.copyTo(it) } }
            check(partial.renameTo(target)) { "cannot move ${partial.name} into place" }
        }
        return target
    }

    companion object {
        const val ASSET = "manifest.json"
        const val STEP = "stream_step"

        /** The embedded manifest, or `null` when `egoedge embed` has not been run for this build. */
        fun load(context: Context): ModelManifest? {
            val text = try {
                context.assets.open(ASSET).bufferedReader().use { it.readText() }
            } catch (_: FileNotFoundException) {
                return null
            }
            return parse(JSONObject(text))
        }

        /** Only `ok` artifacts in formats this app runs are listed (`embed` copies no others). */
        fun parse(json: JSONObject): ModelManifest {
            val items = json.getJSONArray("artifacts")
            val artifacts = (0 until items.length()).map { items.getJSONObject(it) }
                .filter { it.getString("status") == "ok" && it.getString("format") in Runners.formats }
                .map(::artifact)
            val streaming = json.optJSONObject("streaming")?.let {
                StreamingSpec(
                    it.getInt("window"), it.getInt("embedding_dim"), it.optInt("head_threads", 1),
                    bufferInput = it.optString("buffer_input", "embeddings"),
                    validInput = it.optString("valid_input", "valid"),
                    order = it.optString("order", StreamLayout.OLDEST_FIRST),
                    frameInput = it.optString("frame_input", "frame"),
                    nextBufferOutput = it.optString("next_buffer_output", "next_embeddings"),
                    nextValidOutput = it.optString("next_valid_output", "next_valid"),
                )
            }
            return ModelManifest(artifacts, json.optJSONObject("sample"), streaming)
        }

        private fun artifact(a: JSONObject): Artifact {
            val pp = a.getJSONObject("preprocess")
            val size = pp.getJSONArray("size").toLongs()
            return Artifact(
                name = a.getString("name"),
                file = a.getString("file"),
                sha256 = a.getString("sha256"),
                bytes = a.getLong("bytes"),
                format = a.getString("format"),
                precision = a.getString("precision"),
                input = tensor(a.getJSONArray("inputs").getJSONObject(0)),
                output = tensor(a.getJSONArray("outputs").getJSONObject(0)),
                preprocess = PreprocessSpec(
                    height = size[0].toInt(), width = size[1].toInt(),
                    mean = pp.getJSONArray("mean").toFloats(), std = pp.getJSONArray("std").toFloats(),
                    frames = pp.getInt("frames"), layout = pp.getString("layout"),
                ),
                labels = a.getJSONArray("labels").let { l -> List(l.length()) { l.getString(it) } },
                top1 = a.optJSONObject("accuracy")?.optDouble("top1"),
                parityMaxAbs = a.optJSONObject("parity")?.optDouble("max_abs"),
                role = a.optString("role", "clip"),
                pair = if (a.has("pair")) a.getString("pair") else null,
                inputNames = names(a.getJSONArray("inputs")),
                outputNames = names(a.getJSONArray("outputs")),
                inputShapes = a.getJSONArray("inputs").let { l -> List(l.length()) { l.getJSONObject(it).getJSONArray("shape").toLongs() } },
            )
        }

        private fun tensor(t: JSONObject): TensorSpec = TensorSpec(
            name = t.getString("name"),
            shape = t.getJSONArray("shape").toLongs(),
            dtype = t.getString("dtype"),
            quant = if (t.isNull("scale")) null else QuantParams(t.getDouble("scale").toFloat(), t.getInt("zero_point")),
        )

        private fun names(specs: JSONArray) = List(specs.length()) { specs.getJSONObject(it).getString("name") }

        private fun JSONArray.toLongs() = LongArray(length()) { getLong(it) }
        private fun JSONArray.toFloats() = FloatArray(length()) { getDouble(it).toFloat() }
    }
}
