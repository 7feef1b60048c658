// Runs the Android app's Kotlin core on the JVM for tests/test_app_contract.py:
// the Python test writes inputs, this writes what the app would compute, Python compares.
import org.egoedge.demo.core.BenchResult
import org.egoedge.demo.core.Frame
import org.egoedge.demo.core.Json
import org.egoedge.demo.core.Preprocess
import org.egoedge.demo.core.PreprocessSpec
import org.egoedge.demo.core.Quant
import org.egoedge.demo.core.QuantParams
import org.egoedge.demo.core.StreamBuffer
import java.io.File
import java.nio.ByteBuffer
import java.nio.ByteOrder

private fun floats(csv: String) = csv.split(',').map { it.toFloat() }.toFloatArray()

private fun readF32(file: File): FloatArray {
    val buf = ByteBuffer.wrap(file.readBytes()).order(ByteOrder.LITTLE_ENDIAN).asFloatBuffer()
    return FloatArray(buf.remaining()).also { buf.get(it) }
}

private fun writeF32(file: File, x: FloatArray) {
    val buf = ByteBuffer.allocate(4 * x.size).order(ByteOrder.LITTLE_ENDIAN)
    x.forEach { buf.putFloat(it) }
    file.writeBytes(buf.array())
}

fun main(args: Array<String>) {
    when (args[0]) {
        // preprocess CLIP.rgb T H W DST_H DST_W LAYOUT MEAN STD OUT.f32
        "preprocess" -> {
            val t = args[2].toInt()
            val frames = Frame.splitClip(File(args[1]).readBytes(), t, args[3].toInt(), args[4].toInt())
            val spec = PreprocessSpec(args[5].toInt(), args[6].toInt(), floats(args[8]), floats(args[9]), t, args[7])
            writeF32(File(args[10]), Preprocess.clip(frames, spec))
        }
        // quantize IN.f32 SCALE ZERO_POINT OUT.i8
        "quantize" -> File(args[4]).writeBytes(Quant.quantize(readF32(File(args[1])), QuantParams(args[2].toFloat(), args[3].toInt())))
        // result SAMPLES_CSV WARMUP OUT.json
        "result" -> File(args[3]).writeText(Json.write(BenchResult.ok(
            name = "student_tflite_int8", format = "tflite", precision = BenchResult.precisionOf("student_tflite_int8.tflite"),
            device = "JVM harness", runtime = "litert 2.3.0 (xnnpack)", threads = 2, sizeBytes = 127480, loadMs = 12.5,
            samplesMs = args[1].split(',').map { it.toDouble() }.toDoubleArray(), warmup = args[2].toInt(),
            peakRssMb = 91.5, logits = listOf(floatArrayOf(0.25f, -1.5f, 3f)),
        )))
        // stream EMBEDDINGS.f32 WINDOW DIM OUT.f32: after each push, the window then the mask (the head's inputs)
        "stream" -> {
            val dim = args[3].toInt()
            val embeddings = readF32(File(args[1]))
            val buffer = StreamBuffer(args[2].toInt(), dim)
            val out = ArrayList<Float>()
            for (s in 0 until embeddings.size / dim) {
                buffer.push(embeddings.copyOfRange(s * dim, (s + 1) * dim))
                out.addAll(buffer.window().toList())
                out.addAll(buffer.valid().toList())
            }
            writeF32(File(args[4]), out.toFloatArray())
        }
        "error" -> File(args[1]).writeText(Json.write(BenchResult.error("IllegalArgumentException: cannot open /x.pte")))
        else -> error("unknown command ${args[0]}")
    }
}
