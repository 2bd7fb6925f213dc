"""rmpe.runtime."""
from .estimator import Pose, PoseEstimator, Poses  # noqa: E402,F401  (numpy only; onnxruntime loads on first model)
from rmpe.runtime.pose_nms import PoseNMSResult, pose_nms
