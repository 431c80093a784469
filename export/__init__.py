"""gi_sdk.export: merged checkpoint -> model bundle (ONNX, TensorRT). Needs `pip install "gi-sdk[export]"`."""
