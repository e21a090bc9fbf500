"""Models: load one from a spec (:mod:`.loading`, by name: :mod:`.zoo`), truncate it at a layer
(:mod:`.layers`), and read the layer's output as a map (:mod:`.outputs`)."""
from .layers import LayerModel, default_layer, get_layer
from .loading import (IMAGENET_MEAN, IMAGENET_STD, LoadedModel, freeze, load_model, load_weights,
                      read_state_dict, weights_hash)
from .outputs import TOKEN_VIEWS
from .zoo import fixed_input_size

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "TOKEN_VIEWS", "LayerModel", "LoadedModel", "default_layer", "fixed_input_size",
           "freeze", "get_layer", "load_model", "load_weights", "read_state_dict",
           "weights_hash"]
