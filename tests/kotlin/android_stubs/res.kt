// Compile-only stand-ins (tests/test_app_contract.py): just the signatures the app's activities and runners call, so
// kotlinc checks the app's own code without an Android SDK. Not the real APIs: a real build checks those.
package android.content.res
class AssetManager { fun open(name: String): java.io.InputStream = java.io.ByteArrayInputStream(ByteArray(0)) }
