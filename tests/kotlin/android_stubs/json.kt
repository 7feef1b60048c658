// Compile-only stand-ins (tests/test_app_contract.py): just the signatures the app's activities and runners call, so
// kotlinc checks the app's own code without an Android SDK. Not the real APIs: a real build checks those.
@file:Suppress("unused", "UNUSED_PARAMETER")
package org.json
class JSONObject(s: String = "") { fun getJSONArray(k: String) = JSONArray(); fun getJSONObject(k: String) = JSONObject(); fun getString(k: String) = ""; fun getInt(k: String) = 0; fun getLong(k: String) = 0L; fun getDouble(k: String) = 0.0; fun optJSONObject(k: String): JSONObject? = null; fun optString(k: String, d: String) = d; fun optInt(k: String, d: Int) = d; fun optDouble(k: String) = 0.0; fun has(k: String) = false; fun isNull(k: String) = false }
class JSONArray { fun length() = 0; fun getJSONObject(i: Int) = JSONObject(); fun getString(i: Int) = ""; fun getLong(i: Int) = 0L; fun getDouble(i: Int) = 0.0 }
