"""What training, export and serving share: class names, preprocessing, networks, dataset listing."""
from models import runtime  # noqa: F401  (first: quiets Paddle before it is imported)
from models.preprocess import MEAN, STD, ImageError, load_array, load_rgb, normalize, preprocess
from models.networks import MODELS, build_model

# The Kaggle "Bee or Wasp?" classes, in label order.
CLASSES = ("bee", "wasp", "other_insect", "other_noinsect")

__all__ = ["CLASSES", "MEAN", "STD", "MODELS", "ImageError", "build_model", "load_array", "load_rgb",
           "normalize", "preprocess"]
