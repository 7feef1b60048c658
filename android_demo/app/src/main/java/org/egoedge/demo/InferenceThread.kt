package org.egoedge.demo

import java.util.concurrent.ExecutorService
import java.util.concurrent.Executors

/**
 * The process's one inference thread: every model is opened, run and closed on it, whichever activity
 * instance asks. Runtimes are not thread-safe and ExecuTorch's thread pool is process-wide, so an
 * activity recreated on rotation queues its model behind the old instance's close instead of racing it.
 * It is never shut down (it lives as long as the process), so no submission is ever rejected.
 */
object InferenceThread {
    val executor: ExecutorService = Executors.newSingleThreadExecutor { work -> Thread(work, "egoedge-inference") }
}
