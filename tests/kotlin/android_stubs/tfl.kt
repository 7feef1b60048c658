// Compile-only stand-ins (tests/test_app_contract.py): just the signatures the app's activities and runners call, so
// kotlinc checks the app's own code without an Android SDK. Not the real APIs: a real build checks those.
@file:Suppress("unused", "UNUSED_PARAMETER")
package org.tensorflow.lite
enum class DataType { FLOAT32, INT8, UINT8 }
class Tensor { fun numBytes() = 0; fun numElements() = 0; fun shape() = IntArray(0); fun name() = ""; fun dataType() = DataType.FLOAT32
  fun quantizationParams() = QuantizationParams(); class QuantizationParams { val scale = 1f; val zeroPoint = 0 } }
class Interpreter(b: java.nio.ByteBuffer, o: Options) { class Options { fun setNumThreads(n: Int) = this; fun setUseXNNPACK(b: Boolean) = this }
  fun getInputTensor(i: Int) = Tensor(); fun getOutputTensor(i: Int) = Tensor(); val inputTensorCount = 0; val outputTensorCount = 0
  fun run(i: Any, o: Any) {}; fun runForMultipleInputsOutputs(i: Array<Any>, o: Map<Int, Any>) {}; fun close() {} }
