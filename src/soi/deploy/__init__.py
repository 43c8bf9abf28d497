"""Deployment: BatchNorm folding, lean layers, one graph per schedule phase, compiled streamers,
ONNX export with explicit state and the ONNX Runtime streamer."""
