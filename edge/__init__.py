"""edge: export students to ExecuTorch, Core ML, TFLite and ONNX, parity-checked, with a manifest."""
