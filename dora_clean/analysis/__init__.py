"""Steps 1-4, DORA proper (no data needed): s-AMS (:mod:`.sams`), the layer's representations and
EA distance (:mod:`.representations`), outliers and the atlas (:mod:`.outliers`), together in
:func:`analyse_layer` (:mod:`.layer`)."""
from .layer import LayerAnalysis, analyse_layer, check_neurons, layer_width

__all__ = ["LayerAnalysis", "analyse_layer", "check_neurons", "layer_width"]
