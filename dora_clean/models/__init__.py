"""Models: load one from a spec (:mod:`.loading`), and truncate it at a layer (:mod:`.layers`)."""
from .layers import LayerModel, default_layer, get_layer
from .loading import (IMAGENET_MEAN, IMAGENET_STD, LoadedModel, freeze, load_model, load_weights,
                      read_state_dict, weights_hash)

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "LayerModel", "LoadedModel", "default_layer", "freeze", "get_layer",
           "load_model", "load_weights", "read_state_dict", "weights_hash"]
