"""What training, export and serving share: class names, preprocessing, networks, dataset listing."""
from util import runtime  # noqa: F401  (first: quiets Paddle before it is imported)
from models.preprocess import MEAN, STD, ImageError, Preprocessing, load_rgb
from models.cards import MODELS
from models.networks import build_model, cache_root, preprocessing

# The Kaggle "Bee or Wasp?" classes, in label order.
CLASSES = ("bee", "wasp", "other_insect", "other_noinsect")

__all__ = ["CLASSES", "MEAN", "STD", "MODELS", "ImageError", "Preprocessing", "build_model",
           "cache_root", "load_rgb", "preprocessing"]
