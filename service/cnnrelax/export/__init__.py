"""Take the fitted network away: its description (:mod:`.network`), an ONNX model (:mod:`.onnx`) and the array
downloads of a result (:mod:`.arrays`)."""
