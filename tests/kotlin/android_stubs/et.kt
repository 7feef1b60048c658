// Compile-only stand-ins (tests/test_app_contract.py): just the signatures the app's activities and runners call, so
// kotlinc checks the app's own code without an Android SDK. Not the real APIs: a real build checks those.
@file:Suppress("unused", "UNUSED_PARAMETER")
package org.pytorch.executorch
class Tensor { val dataAsFloatArray: FloatArray = FloatArray(0); companion object { @JvmStatic fun fromBlob(x: FloatArray, shape: LongArray) = Tensor() } }
class EValue { fun toTensor() = Tensor(); companion object { @JvmStatic fun from(t: Tensor) = EValue() } }
class Module { fun forward(vararg v: EValue): Array<EValue> = arrayOf(); fun getMethods(): Array<String> = arrayOf(); fun destroy() {}
  companion object { const val LOAD_MODE_MMAP = 1; @JvmStatic fun load(p: String, m: Int, t: Int) = Module() } }
