"""Export stage: runs/<run>/ checkpoints -> runs/<run>/export/ (static Paddle model, ONNX, manifest.json)."""
